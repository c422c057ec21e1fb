// Model and data paths are confined to configured roots. The API checks this
// at submit time and the worker again before opening anything: a spec is user
// input, and `../../etc/passwd` or a symlink out of the root must never load.
import { existsSync, realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';

export class PathError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'PathError';
  }
}

const inside = (root: string, p: string) =>
  p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);

/**
 * Resolves `input` (relative to `root`, or absolute but inside it) and returns
 * it relative to the root, with forward slashes. Throws PathError when it
 * leaves the root, lexically or through a symlink, or (with mustExist) when it
 * does not exist.
 */
export function confinePath(root: string, input: string, opts: { mustExist?: boolean } = {}): string {
  if (input.includes('\0')) throw new PathError('must not contain NUL bytes');
  const absRoot = resolve(root);
  const target = isAbsolute(input) ? resolve(input) : resolve(absRoot, input);
  if (!inside(absRoot, target)) throw new PathError(`must stay inside the root (${absRoot})`);
  if (existsSync(target)) {
    // Compare real paths too, so a symlink inside the root cannot point out of it.
    const realRoot = existsSync(absRoot) ? realpathSync(absRoot) : absRoot;
    if (!inside(realRoot, realpathSync(target)))
      throw new PathError(`resolves (through a symlink) outside the root (${absRoot})`);
  } else if (opts.mustExist) {
    throw new PathError(`does not exist under the root (${absRoot})`);
  }
  return relative(absRoot, target).split(sep).join('/') || '.';
}

/** The absolute path of a root-relative path (what a worker opens); confinement is checked again. */
export function resolveUnderRoot(root: string, relPath: string): string {
  return resolve(resolve(root), confinePath(root, relPath, { mustExist: true }));
}
