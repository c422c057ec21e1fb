#!/usr/bin/env node
// Locates NCCL (nccl.h + libnccl) and the CUDA runtime (cuda_runtime.h + libcudart) for binding.gyp.
//   node scripts/find-nccl.mjs found     -> "yes" or "no"
//   node scripts/find-nccl.mjs includes  -> include dirs (space separated)
//   node scripts/find-nccl.mjs libs      -> linker arguments
// Looked at: $NCCL_HOME / $NCCL_ROOT, $CUDA_HOME / $CUDA_PATH, /usr, /usr/local/cuda, /usr/local,
// /opt/nvidia, and the nvidia/{nccl,cuda_runtime} directories of pip wheels (what a CUDA torch
// installs). A nccl.h must really be NCCL's (declares ncclAllReduce): torch ships an unrelated
// torch/csrc/cuda/nccl.h. MPO_NCCL=0 disables the NCCL build.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const env = process.env;
const uniq = (xs) => [...new Set(xs.filter(Boolean))];

function sitePackages() {
  const out = [];
  for (const root of ['/usr/lib', '/usr/local/lib', '/opt/conda/lib', `${env.HOME ?? '/root'}/.local/lib`]) {
    let entries = [];
    try {
      entries = readdirSync(root).filter((d) => /^python3/.test(d));
    } catch {
      continue;
    }
    for (const py of entries) {
      for (const kind of ['site-packages', 'dist-packages']) out.push(join(root, py, kind));
    }
  }
  if (env.VIRTUAL_ENV) {
    try {
      for (const py of readdirSync(join(env.VIRTUAL_ENV, 'lib')))
        out.push(join(env.VIRTUAL_ENV, 'lib', py, 'site-packages'));
    } catch {}
  }
  return out;
}

function roots(homes, wheelDir) {
  return uniq([
    ...homes,
    '/usr',
    '/usr/local/cuda',
    '/usr/local',
    '/opt/nvidia/nccl',
    ...sitePackages().map((s) => join(s, 'nvidia', wheelDir)),
  ]);
}

function libIn(dir, base) {
  for (const sub of [
    'lib',
    'lib64',
    'lib/x86_64-linux-gnu',
    'lib/aarch64-linux-gnu',
    'targets/x86_64-linux/lib',
  ]) {
    const d = join(dir, sub);
    let names = [];
    try {
      names = readdirSync(d);
    } catch {
      continue;
    }
    if (names.includes(`${base}.so`)) return { dir: d, arg: `-l${base.replace(/^lib/, '')}` };
    const versioned = names.filter((n) => n.startsWith(`${base}.so.`)).sort((a, b) => a.length - b.length)[0];
    if (versioned) return { dir: d, arg: `-l:${versioned}` };
  }
  return null;
}

function find(homes, wheelDir, header, check, lib) {
  for (const r of roots(homes, wheelDir)) {
    for (const inc of [join(r, 'include'), join(r, 'targets/x86_64-linux/include')]) {
      const h = join(inc, header);
      if (!existsSync(h)) continue;
      if (check && !check(readFileSync(h, 'utf8'))) continue;
      const l = libIn(r, lib);
      if (l) return { include: inc, ...l };
    }
  }
  return null;
}

function locate() {
  if (env.MPO_NCCL === '0') return null;
  const nccl = find(
    [env.NCCL_HOME, env.NCCL_ROOT],
    'nccl',
    'nccl.h',
    (t) => t.includes('ncclAllReduce'),
    'libnccl',
  );
  if (!nccl) return null;
  const cuda = find([env.CUDA_HOME, env.CUDA_PATH], 'cuda_runtime', 'cuda_runtime.h', null, 'libcudart');
  if (!cuda) return null;
  return { nccl, cuda };
}

const what = process.argv[2] ?? 'found';
const f = locate();
if (what === 'found') process.stdout.write(f ? 'yes' : 'no');
else if (what === 'includes') process.stdout.write(f ? uniq([f.nccl.include, f.cuda.include]).join(' ') : '');
else if (what === 'libs') {
  if (!f) process.stdout.write('');
  else {
    const dirs = uniq([f.nccl.dir, f.cuda.dir]);
    process.stdout.write(
      [...dirs.flatMap((d) => [`-L${d}`, `-Wl,-rpath,${d}`]), f.nccl.arg, f.cuda.arg].join(' '),
    );
  }
} else if (what === 'json') process.stdout.write(`${JSON.stringify(f)}\n`);
else {
  process.stderr.write('usage: find-nccl.mjs found|includes|libs|json\n');
  process.exit(2);
}
