import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { mpo, repoRoot } from './helpers.js';

const manifest = JSON.parse(readFileSync(join(repoRoot, 'datasets/manifest.json'), 'utf8')) as {
  files: { path: string; rows: number | null; licence: string }[];
};

describe('mpo data list', () => {
  it('prints each builtin with rows/size, languages, licence and its path in the repository', async () => {
    const r = await mpo(['data', 'list']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^id\s+kind\s+rows\/size\s+languages\s+licence\s+path$/);
    const mj = lines.find((l) => l.startsWith('builtin:multijail'))!;
    const mjFile = manifest.files.find((f) => f.path === 'datasets/multijail/MultiJail.csv')!;
    expect(mj).toContain(`${mjFile.rows} rows`);
    expect(mj).toContain('en zh it vi ar ko th bn sw jv');
    expect(mj).toContain(mjFile.licence);
    expect(mj.endsWith(join(repoRoot, mjFile.path))).toBe(true);
    for (const id of [
      'builtin:tiny-multilingual',
      'builtin:golden-llama',
      'builtin:mpo-qwen',
      'builtin:alpaca-en',
    ])
      expect(
        lines.some((l) => l.startsWith(`${id} `)),
        id,
      ).toBe(true);
    expect(r.stdout).toMatch(/CSRT .* not shipped.*github\.com\/haneul-yoo\/csrt @ 574574a/);
  });

  it('--json has the same entries as objects; an unknown subcommand is a usage error', async () => {
    const r = await mpo(['data', 'list', '--json']);
    const entries = JSON.parse(r.stdout) as { id: string; kind: string; rows: number | null }[];
    expect(entries.find((e) => e.id === 'builtin:mpo-llama')).toMatchObject({ kind: 'data', rows: 600 });
    const bad = await mpo(['data', 'show']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown subcommand 'show'/);
  });
});
