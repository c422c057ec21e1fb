#!/usr/bin/env node
// Builds build/Release/mpo_allreduce.node and build/Release/mpo-rank-exec with node-gyp.
// `configure` runs only when build/ is missing or binding.gyp / the NCCL probe changed; otherwise
// only `node-gyp build` (make) runs, which recompiles just what changed.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(pkg, 'package.json'));
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
const log = (m) => process.stderr.write(`[allreduce] ${m}\n`);

// Use the installed Node headers (no download) when they are there.
const prefix = dirname(dirname(process.execPath));
const nodedir =
  process.env.npm_config_nodedir ||
  (existsSync(join(prefix, 'include', 'node', 'common.gypi')) ? prefix : '');
const common = nodedir ? [`--nodedir=${nodedir}`] : [];

const probe = spawnSync(process.execPath, [join(pkg, 'scripts', 'find-nccl.mjs'), 'json'], {
  encoding: 'utf8',
});
const stampFile = join(pkg, 'build', '.configure-stamp');
const stamp = JSON.stringify({
  gyp: statSync(join(pkg, 'binding.gyp')).mtimeMs,
  nccl: probe.stdout.trim(),
  c10d: spawnSync(process.execPath, [join(pkg, 'scripts', 'find-c10d.mjs'), 'json'], { encoding: 'utf8' })
    .stdout,
  nodedir,
});

const run = (sub, extra = []) => {
  const r = spawnSync(process.execPath, [gyp, sub, '--release', ...common, ...extra], {
    cwd: pkg,
    stdio: 'inherit',
  });
  if (r.status !== 0) throw new Error(`node-gyp ${sub} failed (exit ${r.status})`);
};

const configured =
  existsSync(join(pkg, 'build', 'Makefile')) &&
  existsSync(stampFile) &&
  readFileSync(stampFile, 'utf8') === stamp;
if (!configured) {
  log(`configuring (NCCL: ${probe.stdout.trim() === 'null' ? 'not found, building without it' : 'found'})`);
  run('configure');
  writeFileSync(stampFile, stamp);
}
run('build', ['--jobs', process.env.MPO_BUILD_JOBS ?? '1']);
