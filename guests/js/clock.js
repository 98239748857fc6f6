// Reads time and randomness the way plain JavaScript does. The host
// journals them, so a replay sees the same values: the echo of what the
// first run read must match what a replay reads. Also yields what its
// input asks, to show how an unknown request fails.
export function* workflow(input, ctx) {
  const first = { now: Date.now(), random: Math.random(), date: new Date().toISOString() };
  const echoed = yield ctx.call('builtin', 'echo', first);
  const again = { now: Date.now(), random: Math.random() };
  yield ctx.save();
  if (input && input.yield !== undefined) yield input.yield;
  return { first, echoed, again, same: JSON.stringify(first) === JSON.stringify(echoed) };
}
