// `n` echo steps through `builtin/echo`, in the idiomatic form, each
// checked: a wrong replayed value fails the run.
export function* workflow({ n }, ctx) {
  let checksum = 0;
  for (let i = 0; i < n; i++) {
    const echoed = yield ctx.call('builtin', 'echo', i);
    if (echoed !== i) throw new Error(`step ${i} echoed ${echoed}`);
    checksum = (checksum * 31 + echoed) % 1000000007;
  }
  return { steps: n, checksum };
}
