// A copy of this checkout as a user gets it: `git clone` (committed files only) into a folder of its
// own, plus this checkout's build outputs (node_modules, dist, native build, generated client)
// hard-linked in, standing for `npm ci && npm run build` (minutes) in the copy. It clones HEAD:
// commit first to test uncommitted work (CI runs on a fresh clone, where HEAD is everything).
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export const repoRoot = resolve(import.meta.dirname, '..');
const BUILD_OUTPUT = /(^|\/)(node_modules|dist|build|generated)\/$/;

/** Ignored build folders of this checkout (`git ls-files --ignored --directory`). */
function buildOutputs(): string[] {
  return execFileSync(
    'git',
    ['ls-files', '-z', '--others', '--ignored', '--exclude-standard', '--directory'],
    { cwd: repoRoot, encoding: 'utf8' },
  )
    .split('\0')
    .filter((p) => BUILD_OUTPUT.test(p));
}

/** Clones HEAD of this checkout into `dest` and links the build outputs in; returns `dest`. */
export function cloneBuilt(dest: string): string {
  execFileSync('git', ['clone', '-q', repoRoot, dest]);
  for (const rel of buildOutputs()) {
    const to = join(dest, rel);
    mkdirSync(dirname(to), { recursive: true });
    // -a keeps node_modules' relative workspace symlinks pointing inside the copy; hard links (-l)
    // need the same filesystem, else the files are copied.
    const [from, into] = [join(repoRoot, rel), to.replace(/\/$/, '')];
    try {
      execFileSync('cp', ['-al', from, into], { stdio: 'pipe' });
    } catch {
      rmSync(into, { recursive: true, force: true });
      execFileSync('cp', ['-a', from, into]);
    }
  }
  return dest;
}
