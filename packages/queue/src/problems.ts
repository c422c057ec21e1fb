/** One thing wrong with an input: where (a dotted path, `[i]` for array items) and why. */
export interface Problem {
  path: string;
  reason: string;
}

/**
 * Thrown with every problem found, never just the first: a spec with three
 * mistakes is fixed in one round trip. The API answers it with 400.
 */
export class ProblemsError extends Error {
  readonly statusCode = 400;
  constructor(
    readonly problems: Problem[],
    what = 'input',
  ) {
    super(`invalid ${what}: ${problems.map((p) => `${p.path || '(root)'}: ${p.reason}`).join('; ')}`);
    this.name = 'ProblemsError';
  }
}

/** JSON pointer ("/search/space/0") → the dotted path we report ("search.space[0]"). */
export function pointerToPath(pointer: string): string {
  if (!pointer) return '';
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(seg) ? `[${seg}]` : out ? `.${seg}` : seg;
  }
  return out;
}

export const joinPath = (prefix: string, key: string | number): string =>
  typeof key === 'number' ? `${prefix}[${key}]` : prefix ? `${prefix}.${key}` : key;
