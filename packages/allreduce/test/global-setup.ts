// The tests spawn rank processes that import dist/ and need the addon: build when anything is stale
// (CI builds before testing, so this is a no-op there).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = fileURLToPath(new URL('..', import.meta.url));

function newest(dir: string, ext: RegExp): number {
  let t = 0;
  for (const f of readdirSync(dir, { withFileTypes: true })) {
    if (f.isFile() && ext.test(f.name)) t = Math.max(t, statSync(join(dir, f.name)).mtimeMs);
  }
  return t;
}

function mtime(p: string): number {
  return existsSync(p) ? statSync(p).mtimeMs : 0;
}

export default function setup(): void {
  const addon = mtime(join(pkg, 'build/Release/mpo_allreduce.node'));
  if (
    addon === 0 ||
    newest(join(pkg, 'native'), /\.(cc|h|c)$/) > addon ||
    mtime(join(pkg, 'binding.gyp')) > addon
  ) {
    const r = spawnSync(process.execPath, [join(pkg, 'scripts/build-addon.mjs')], {
      cwd: pkg,
      stdio: 'inherit',
    });
    if (r.status !== 0) throw new Error('building the allreduce addon failed');
  }
  const dist = mtime(join(pkg, 'dist/index.js'));
  if (dist === 0 || newest(join(pkg, 'src'), /\.ts$/) > newest(join(pkg, 'dist'), /\.js$/)) {
    const tsc = join(pkg, '../../node_modules/typescript/bin/tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: pkg, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('tsc failed');
  }
}
