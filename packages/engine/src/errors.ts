// The engine imports nothing of ours (tests/layout.test.ts), so it keeps its own
// copy of @mpo/util's errorMessage: the message of anything a `catch` caught.
export function errorMessage(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'message' in err && typeof err.message === 'string')
    return err.message;
  return String(err);
}
