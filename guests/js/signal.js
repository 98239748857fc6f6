// Waits a moment (a durable timer), then for the signal `approve`; an
// approval calls a tool with what it carried, a refusal fails the
// execution with a structured error.
import { WorkflowError } from '@reprise/workflow';

export function* workflow(input, ctx) {
  const before = yield ctx.call('builtin', 'echo', { order: input.order });
  yield ctx.sleep(20);
  const decision = yield ctx.signal('approve');
  if (!decision.approved) {
    throw new WorkflowError('rejected', `order ${before.order} was rejected`, { by: decision.by });
  }
  const after = yield { __tool: ['builtin', 'echo', { order: before.order, by: decision.by }] };
  return { ...after, approved: true };
}
