/**
 * The message of anything a `catch` caught: an Error's (or any object's) `message`,
 * else the value as text. `catch (err)` gives `unknown`; this replaces the
 * `(err as Error).message` casts, which print "undefined" for a thrown string.
 */
export function errorMessage(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'message' in err && typeof err.message === 'string')
    return err.message;
  return String(err);
}
