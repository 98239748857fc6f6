// `n` echo steps through `builtin/echo`, in the idiomatic form, each
// checked: a wrong replayed value fails the run. With `parallel`, all `n`
// calls are yielded at once and run concurrently.
export function* workflow({ n, parallel }, ctx) {
  const inputs = Array.from({ length: n }, (_, i) => i);
  let echoes;
  if (parallel) {
    echoes = yield ctx.all(inputs.map((i) => ctx.call('builtin', 'echo', i)));
  } else {
    echoes = [];
    for (const i of inputs) {
      echoes.push(yield ctx.call('builtin', 'echo', i));
    }
  }
  let checksum = 0;
  echoes.forEach((echoed, i) => {
    if (echoed !== i) throw new Error(`step ${i} echoed ${echoed}`);
    checksum = (checksum * 31 + echoed) % 1000000007;
  });
  return { steps: n, checksum };
}
