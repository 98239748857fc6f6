// Waits for the signal `approve`, then calls a tool with what it carried.
export function* workflow(input, ctx) {
  const before = yield ctx.call('builtin', 'echo', { order: input.order });
  const decision = yield ctx.signal('approve');
  if (!decision.approved) {
    return { order: before.order, approved: false };
  }
  const after = yield { __tool: ['builtin', 'echo', { order: before.order, by: decision.by }] };
  return { ...after, approved: true };
}
