#!/usr/bin/env node
// Locates libtorch's c10d (ProcessGroupGloo, TCPStore; ProcessGroupNCCL in a CUDA libtorch) and gloo's
// headers for binding.gyp's mpo_c10d target.
//   node scripts/find-c10d.mjs found     -> "yes" or "no"
//   node scripts/find-c10d.mjs includes  -> include dirs (space separated)
//   node scripts/find-c10d.mjs libs      -> linker arguments
//   node scripts/find-c10d.mjs defines   -> MPO_C10D_NCCL=1 with a CUDA libtorch, else nothing
// LIBTORCH=<dir with include/ and lib/> (e.g. a torch 2.x wheel's torch/, which ships gloo's headers) as
// the engine's build takes it; otherwise Debian's libtorch-dev with libgloo-dev. MPO_C10D=0 disables it.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

function probe() {
  if (process.env.MPO_C10D === '0') return null;
  const dir = process.env.LIBTORCH;
  const inc = dir ? join(dir, 'include') : '/usr/include';
  const lib = dir ? join(dir, 'lib') : '';
  if (!existsSync(join(inc, 'torch/csrc/distributed/c10d/ProcessGroupGloo.hpp'))) return null;
  const glooInc = [inc, '/usr/include'].find((d) => existsSync(join(d, 'gloo/algorithm.h')));
  if (!glooInc) return null;
  const cuda = dir ? existsSync(join(lib, 'libtorch_cuda.so')) : false;
  return {
    includes: [...new Set([inc, join(inc, 'torch/csrc/api/include'), glooInc])],
    libs: [
      ...(lib ? [`-L${lib}`, `-Wl,-rpath,${lib}`] : []),
      ...(cuda ? ['-Wl,--no-as-needed', '-ltorch_cuda', '-lc10_cuda', '-Wl,--as-needed'] : []),
      '-ltorch',
      '-ltorch_cpu',
      '-lc10',
    ],
    defines: cuda ? ['MPO_C10D_NCCL=1', 'USE_C10D_NCCL'] : [],
  };
}

const p = probe();
const what = process.argv[2];
if (what === 'found') process.stdout.write(p ? 'yes' : 'no');
else if (what === 'includes') process.stdout.write(p ? p.includes.join(' ') : '');
else if (what === 'libs') process.stdout.write(p ? p.libs.join(' ') : '');
else if (what === 'defines') process.stdout.write(p ? p.defines.join(' ') : '');
else process.stdout.write(JSON.stringify(p));
