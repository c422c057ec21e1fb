#!/usr/bin/env node
// Builds build/Release/mpo_engine.node with node-gyp. `configure` runs only when the build folder
// is missing or binding.gyp / LIBTORCH changed; otherwise only `node-gyp build` (make) runs, which
// recompiles just the changed C++ files.
//
// LIBTORCH=<dir>: build against that libtorch (include/, lib/) instead of Debian's libtorch-dev.
// A torch 2.x wheel works: LIBTORCH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))').
// TORCH_CXX11_ABI=0|1 overrides the C++ ABI (default: asked from python when LIBTORCH is set).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(pkg, 'package.json'));
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
const log = (m) => process.stderr.write(`[engine] ${m}\n`);

// TORCH_VERSION_MAJOR/MINOR/PATCH from a libtorch's torch/version.h: the C++ code branches on these
// at compile time (e.g. fused attention from 2.0 on); the build log says which libtorch it found.
function torchVersion(versionHeader) {
  const text = readFileSync(versionHeader, 'utf8');
  const part = (name) => text.match(new RegExp(`#define TORCH_VERSION_${name} (\\d+)`))?.[1] ?? '?';
  return `${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
}

function torchVariables() {
  const dir = process.env.LIBTORCH;
  if (!dir) {
    const header = '/usr/include/torch/csrc/api/include/torch/version.h';
    if (!existsSync(header)) {
      throw new Error(
        'libtorch headers not found: install Debian libtorch-dev and libopenblas0-pthread ' +
          '(apt-get install libtorch-dev libopenblas0-pthread) or set LIBTORCH=<libtorch dir>',
      );
    }
    log(`libtorch ${torchVersion(header)} (CPU) from Debian libtorch-dev, /usr/include`);
    return {};
  }
  const inc = join(dir, 'include');
  const lib = join(dir, 'lib');
  if (!existsSync(join(inc, 'torch/csrc/api/include/torch/version.h'))) {
    throw new Error(`LIBTORCH=${dir}: no include/torch/csrc/api/include/torch/version.h there`);
  }
  const cuda = existsSync(join(lib, 'libtorch_cuda.so'));
  log(
    `libtorch ${torchVersion(join(inc, 'torch/csrc/api/include/torch/version.h'))} (${cuda ? 'CUDA' : 'CPU'}) from LIBTORCH=${dir}`,
  );
  let abi = process.env.TORCH_CXX11_ABI ?? '';
  if (!abi) {
    const r = spawnSync('python3', ['-c', 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))'], {
      encoding: 'utf8',
    });
    if (r.status === 0) abi = r.stdout.trim();
  }
  return {
    torch_includes: `${inc} ${join(inc, 'torch/csrc/api/include')}`,
    torch_libdir: lib,
    // 'yes'/'no', not '1'/'0': gyp turns numeric strings into integers, and "torch_cuda=='1'" never matched.
    torch_cuda: cuda ? 'yes' : 'no',
    torch_cxx11_abi: abi,
  };
}

// Node's headers: from npm's nodedir setting or next to the running node (Debian's nodejs ships them
// in /usr/include/node); node-gyp would otherwise try to download them.
function nodeDir() {
  const fromNpm = process.env.npm_config_nodedir;
  if (fromNpm) return fromNpm;
  const prefix = dirname(dirname(process.execPath));
  return existsSync(join(prefix, 'include/node/node_api.h')) ? prefix : undefined;
}

const vars = torchVariables();
const nodedir = nodeDir();
const args = [
  ...(nodedir ? [`--nodedir=${nodedir}`] : []),
  ...Object.entries(vars).map(([k, v]) => `--${k}=${v}`),
];
const stampFile = join(pkg, 'build', '.configure-stamp');
const stamp = JSON.stringify({ args, gyp: statSync(join(pkg, 'binding.gyp')).mtimeMs });
const run = (sub) => {
  const jobs = process.env.MPO_BUILD_JOBS ?? 'max';
  const extra = sub === 'build' ? ['--jobs', jobs] : args;
  const r = spawnSync(process.execPath, [gyp, sub, '--release', ...extra], { cwd: pkg, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`node-gyp ${sub} failed (exit ${r.status})`);
};
const t0 = Date.now();
if (!existsSync(stampFile) || readFileSync(stampFile, 'utf8') !== stamp) {
  log(`node-gyp configure ${args.join(' ')}`);
  run('configure');
  writeFileSync(stampFile, stamp);
}
run('build');
log(`addon built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
