import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const readJson = (p: string) => JSON.parse(readFileSync(join(root, p), 'utf8'));
const workspaces = ['apps', 'packages'].flatMap((dir) =>
  readdirSync(join(root, dir))
    .filter((d) => existsSync(join(root, dir, d, 'package.json')))
    .map((d) => `${dir}/${d}`),
);

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (f === 'generated' || f === 'node_modules') return [];
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return /\.(ts|mts|js|mjs)$/.test(f) ? [p] : [];
  });
}

describe('repository layout', () => {
  it('has the top-level pieces', () => {
    for (const p of [
      'package.json',
      'turbo.json',
      'apps/api',
      'apps/worker',
      'apps/cli',
      'prisma/schema.prisma',
      'prisma/migrations',
      'infra',
      'bench',
      'docker-compose.yml',
      'README.md',
      'BENCHMARKS.md',
      '.ci/run',
    ]) {
      expect(existsSync(join(root, p)), p).toBe(true);
    }
    for (const p of ['engine', 'objectives', 'trainer', 'data', 'eval', 'allreduce', 'queue', 'db']) {
      expect(existsSync(join(root, 'packages', p, 'package.json')), p).toBe(true);
    }
  });

  it('is an ESM, Node 20, npm-workspaces monorepo with turbo pipelines', () => {
    const pkg = readJson('package.json');
    expect(pkg.type).toBe('module');
    expect(pkg.engines.node).toMatch(/20/);
    expect(pkg.workspaces).toEqual(expect.arrayContaining(['packages/*', 'apps/*']));
    expect(Object.keys(readJson('turbo.json').tasks)).toEqual(
      expect.arrayContaining(['build', 'test', 'lint', 'bench']),
    );
    const ts = readJson('tsconfig.base.json').compilerOptions;
    expect(ts.strict).toBe(true);
    expect(ts.module).toBe('NodeNext');
  });

  it('gives every workspace the same scripts and module kind', () => {
    for (const w of workspaces) {
      const pkg = readJson(`${w}/package.json`);
      expect(pkg.name, w).toMatch(/^@mpo\//);
      expect(pkg.type, w).toBe('module');
      expect(pkg.scripts?.build, `${w} build`).toBeDefined();
      expect(pkg.scripts?.test, `${w} test`).toMatch(/vitest/);
      expect(readJson(`${w}/tsconfig.json`).extends, w).toBe('../../tsconfig.base.json');
    }
  });

  it('declares the mpo bin in the CLI package', () => {
    expect(readJson('apps/cli/package.json').bin.mpo).toBe('./bin/mpo.js');
  });

  it('keeps dependencies pointing one way: apps -> packages, engine imports nothing of ours', () => {
    const appNames = workspaces
      .filter((w) => w.startsWith('apps/'))
      .map((w) => readJson(`${w}/package.json`).name);
    for (const w of workspaces.filter((w) => w.startsWith('packages/'))) {
      const pkg = readJson(`${w}/package.json`);
      const deps = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies });
      const imports = sourceFiles(join(root, w, 'src')).flatMap((f) =>
        [...readFileSync(f, 'utf8').matchAll(/from\s+['"](@mpo\/[a-z-]+)/g)].map((m) => m[1]!),
      );
      for (const name of [...deps, ...imports])
        expect(appNames, `${w} must not depend on ${name}`).not.toContain(name);
      if (w === 'packages/engine') {
        expect(
          [...deps, ...imports].filter((d) => d.startsWith('@mpo/')),
          'engine imports nothing of ours',
        ).toEqual([]);
      }
      for (const f of sourceFiles(join(root, w, 'src'))) {
        expect(readFileSync(f, 'utf8'), `${f} reaches into apps/`).not.toMatch(/from\s+['"][./]+\/apps\//);
      }
    }
  });

  it('lets only packages/db import Prisma', () => {
    for (const w of workspaces.filter((w) => w !== 'packages/db')) {
      for (const f of sourceFiles(join(root, w, 'src'))) {
        expect(readFileSync(f, 'utf8'), f).not.toMatch(/from\s+['"]@prisma\//);
      }
    }
  });
});
