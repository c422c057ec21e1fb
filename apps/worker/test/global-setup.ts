// The tests start agents as real processes from dist/main.js (and the CLI
// from apps/cli/dist): build the worker when its sources are newer than dist
// (CI builds before testing, so this is a no-op there).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = fileURLToPath(new URL('..', import.meta.url));

function newest(dir: string, ext: RegExp): number {
  if (!existsSync(dir)) return 0;
  let t = 0;
  for (const f of readdirSync(dir, { withFileTypes: true })) {
    if (f.isFile() && ext.test(f.name)) t = Math.max(t, statSync(join(dir, f.name)).mtimeMs);
  }
  return t;
}

export default function setup(): void {
  if (newest(join(pkg, 'src'), /\.ts$/) > newest(join(pkg, 'dist'), /\.js$/)) {
    const tsc = join(pkg, '../../node_modules/typescript/bin/tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: pkg, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('tsc failed');
  }
}
