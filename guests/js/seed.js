// The seed's example, as written: three tool calls, each a durable step.
// A tool error comes back as a value ({ __error: message }).
export function* workflow(input) {
  const user = yield { __tool: ['api', 'user', { id: input.userId }] };
  if (user.__error) {
    return { failed: true, reason: user.__error };
  }
  const posts = yield { __tool: ['api', 'posts', { uid: user.id }] };
  const comments = yield { __tool: ['api', 'comments', { postIds: posts.map(p => p.id) }] };

  // All locals (user, posts, comments) in closure, not in memory cache
  return { user, posts, comments };
}
