// The seed's example on the demo API every host offers (`demo/user`,
// `demo/posts`, `demo/comments`), so it runs as is with `reprise run`:
//   reprise build guests/js/demo.js && reprise run guests/js/demo.wasm --input '{"userId": 7}'
export function* workflow(input) {
  const user = yield { __tool: ['demo', 'user', { id: input.userId }] };
  if (user.__error) {
    return { failed: true, reason: user.__error };
  }
  const posts = yield { __tool: ['demo', 'posts', { uid: user.id }] };
  const comments = yield { __tool: ['demo', 'comments', { post_ids: posts.map((p) => p.id) }] };
  return { user, posts, comments };
}
