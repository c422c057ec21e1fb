// The data the project ships: every file's sha256 matches datasets/manifest.json and the README table,
// each names its origin and licence (with the licence text committed), and nothing in the repository
// reaches outside it for data (a clone has no sibling folder to read).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readCsv } from '@mpo/eval';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
interface ManifestFile {
  path: string;
  rows: number | null;
  bytes: number;
  sha256: string;
  languages: string[];
  licence: string;
  licenceFiles: string[];
  origin: { repo: string; path: string; commit: string | null };
}
const manifest = JSON.parse(readFileSync(join(root, 'datasets/manifest.json'), 'utf8')) as {
  files: ManifestFile[];
};
const sha256 = (p: string) =>
  createHash('sha256')
    .update(readFileSync(join(root, p)))
    .digest('hex');
const tracked = () =>
  execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean);

describe('datasets/', () => {
  it('every file has the sha256 and size of the manifest, and the README table agrees row by row', () => {
    const readme = readFileSync(join(root, 'datasets/README.md'), 'utf8');
    const table = new Map(
      [...readme.matchAll(/^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$/gm)].map((m) => [m[1]!, m[2]!]),
    );
    expect([...table.keys()].sort()).toEqual(manifest.files.map((f) => f.path).sort());
    for (const f of manifest.files) {
      expect(sha256(f.path), f.path).toBe(f.sha256);
      expect(readFileSync(join(root, f.path)).length, f.path).toBe(f.bytes);
      expect(table.get(f.path), `README row of ${f.path}`).toBe(f.sha256);
    }
  });

  it('every file under datasets/ is in the manifest (or is a licence text, the README or the manifest)', () => {
    const listed = new Set(manifest.files.map((f) => f.path));
    const extra = tracked()
      .filter((p) => p.startsWith('datasets/'))
      .filter((p) => !listed.has(p) && !/^datasets\/(README\.md|manifest\.json|licenses\/.+\.txt)$/.test(p));
    expect(extra).toEqual([]);
  });

  it('each upstream file names its repository, commit and licence, and the licence texts are committed', () => {
    for (const f of manifest.files.filter((x) => x.origin.commit)) {
      expect(f.origin.repo, f.path).toMatch(/^github\.com\/[\w.-]+\/[\w.-]+$/);
      expect(f.origin.commit, f.path).toMatch(/^[0-9a-f]{7,40}$/);
      expect(f.licenceFiles.length + (f.path.endsWith('LICENSE') ? 1 : 0), f.path).toBeGreaterThan(0);
      for (const l of f.licenceFiles) expect(existsSync(join(root, l)), l).toBe(true);
    }
    expect(readFileSync(join(root, 'datasets/licenses/Apache-2.0.txt'), 'utf8')).toMatch(
      /Apache License\s+Version 2\.0, January 2004/,
    );
    expect(readFileSync(join(root, 'datasets/licenses/CC-BY-NC-4.0.txt'), 'utf8')).toMatch(
      /Creative Commons Attribution-NonCommercial 4\.0 International Public\s+License/,
    );
    expect(readFileSync(join(root, 'datasets/multijail/LICENSE'), 'utf8')).toMatch(/MIT License/);
  });

  it('rows match the files (the counts the README and `mpo data list` print)', () => {
    for (const f of manifest.files.filter((x) => x.rows !== null)) {
      const text = readFileSync(join(root, f.path), 'utf8');
      let rows: number;
      if (f.path.endsWith('.jsonl')) rows = text.trim().split('\n').length;
      else if (f.path.endsWith('expected.json')) rows = JSON.parse(text).examples.length;
      else if (f.path.endsWith('.json')) rows = JSON.parse(text).length;
      else rows = readCsv(join(root, f.path)).records.length;
      expect(rows, f.path).toBe(f.rows);
    }
  });

  it('CSRT (no licence upstream) is not committed', () => {
    expect(tracked().filter((p) => /csrt/i.test(p) && p.endsWith('.csv'))).toEqual([]);
  });
});

describe('the Docker image carries the data', () => {
  it('COPY . . with no .dockerignore pattern matching a shipped file, checked at build time', () => {
    const dockerfile = readFileSync(join(root, 'infra/Dockerfile'), 'utf8');
    // The whole context, owned by the image's unprivileged user (issue 16's deployment defaults).
    expect(dockerfile).toMatch(/^COPY (--chown=\S+ )?\. \.$/m);
    expect(dockerfile).toMatch(/mpo\.js data list --check/);
    // .dockerignore patterns as Docker reads them (** any depth, * within a name), anchored at the root.
    const patterns = readFileSync(join(root, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    const toRegex = (p: string) =>
      new RegExp(
        `^${p
          .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
          .replace(/\*\*\//g, '(.*/)?')
          .replace(/\*/g, '[^/]*')}(/|$)`,
      );
    for (const f of manifest.files) {
      for (const p of patterns) expect(toRegex(p).test(f.path), `${p} excludes ${f.path}`).toBe(false);
    }
  });

  it('no compose or Kubernetes volume mounts a /shared folder', () => {
    for (const p of tracked().filter((x) => /\.ya?ml$/.test(x))) {
      expect(readFileSync(join(root, p), 'utf8'), p).not.toMatch(/(mountPath:|:)\s*\/shared\b|\/shared:/);
    }
  });
});

describe('nothing reads a folder beside the repository', () => {
  it('no tracked file mentions the developers-only sibling folder or its variable', () => {
    // Built from pieces so that this file does not match itself.
    const sibling = `${'.'.repeat(2)}/shared`;
    const variable = ['MPO', 'SHARED', 'DIR'].join('_');
    const joined = /['"]\.\.['"],\s*['"]shared['"]/;
    const hits: string[] = [];
    for (const p of tracked()) {
      const buf = readFileSync(join(root, p));
      if (buf.includes(0)) continue; // binary (weights)
      const text = buf.toString('utf8');
      text.split('\n').forEach((line, i) => {
        if (line.includes(sibling) || line.includes(variable) || joined.test(line))
          hits.push(`${p}:${i + 1}`);
      });
    }
    expect(hits).toEqual([]);
  });
});
