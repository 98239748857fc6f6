// Emits `count` items to its output stream, a save point after each batch
// of ten, and returns how many it emitted.
export function* workflow({ count }, ctx) {
  for (let i = 0; i < count; i++) {
    yield ctx.emit({ i, square: i * i });
    if (i % 10 === 9) yield ctx.save();
  }
  return { emitted: count };
}
