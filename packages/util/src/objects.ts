/** A plain JSON object (not null, not an array): the check every config and payload parser starts with. */
export function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
