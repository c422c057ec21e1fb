// Durable directories: what a checkpoint (or a ZeRO shard set) is written
// through so that a crash, a power cut or a full disk never leaves a newest
// directory that looks whole but is not.
//
//   fill a temporary folder → a manifest of every file (bytes, sha256, hashed
//   by streaming: files over 2 GiB hash like any other) → fsync each file and
//   the folder → rename it into place → fsync the parent (the rename itself
//   must survive) → remove all but the newest `keep`.
//
// Readers call `verifyDir`: a directory whose files do not match its manifest
// (truncated, missing, rewritten) is torn, and `newestIntact` falls back to
// the previous one.

import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '@mpo/util';

export const MANIFEST_FILE = 'manifest.json';
const CHUNK = 1 << 20;

export interface ManifestEntry {
  bytes: number;
  sha256: string;
}

export interface Manifest {
  version: 1;
  /** File name → size and sha256 (every plain file of the directory except the manifest). */
  files: Record<string, ManifestEntry>;
  /** sha256 over (name, NUL, content) of every file in name order: one digest for the whole directory. */
  sha256: string;
  bytes: number;
}

/** Reads `path` in 1 MiB chunks, feeding each to every hash given (never the whole file in memory). */
function streamFile(path: string, ...hashes: ReturnType<typeof createHash>[]): number {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  let total = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, CHUNK, null);
      if (n === 0) break;
      const chunk = buf.subarray(0, n);
      for (const h of hashes) h.update(chunk);
      total += n;
    }
  } finally {
    closeSync(fd);
  }
  return total;
}

const dataFiles = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f !== MANIFEST_FILE && statSync(join(dir, f)).isFile())
    .sort();

/** The manifest of a directory's files as they are now, hashed by streaming. */
export function manifestOf(dir: string): Manifest {
  const whole = createHash('sha256');
  const files: Record<string, ManifestEntry> = {};
  let bytes = 0;
  for (const f of dataFiles(dir)) {
    const own = createHash('sha256');
    whole.update(f).update('\0');
    const n = streamFile(join(dir, f), own, whole);
    files[f] = { bytes: n, sha256: own.digest('hex') };
    bytes += n;
  }
  return { version: 1, files, sha256: whole.digest('hex'), bytes };
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface DurableWrite {
  dir: string;
  manifest: Manifest;
}

/**
 * Writes directory `root/name` durably: `fill` writes the files into a
 * temporary sibling; then manifest, fsync (files, folder), rename, fsync of
 * `root`, and removal of older directories matching `older` beyond the newest
 * `keep` (0 keeps all) and of stray temporaries. Names must sort by age.
 */
export async function writeDurableDir(
  root: string,
  name: string,
  fill: (tmp: string) => Promise<void>,
  opts: { keep: number; older: RegExp },
): Promise<DurableWrite> {
  mkdirSync(root, { recursive: true });
  const final = join(root, name);
  const tmp = `${final}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  await fill(tmp);
  const manifest = manifestOf(tmp);
  writeFileSync(join(tmp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  for (const f of readdirSync(tmp)) if (statSync(join(tmp, f)).isFile()) fsyncPath(join(tmp, f));
  fsyncPath(tmp);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  fsyncPath(root);
  prune(root, opts.keep, opts.older);
  return { dir: final, manifest };
}

/** Keeps the newest `keep` directories matching `pattern` (0 = all) and removes stray temporaries. */
function prune(root: string, keep: number, pattern: RegExp): void {
  const entries = readdirSync(root);
  for (const d of entries) if (d.includes('.tmp-')) rmSync(join(root, d), { recursive: true, force: true });
  if (keep <= 0) return;
  const complete = entries.filter((d) => pattern.test(d)).sort();
  for (const d of complete.slice(0, Math.max(0, complete.length - keep))) {
    rmSync(join(root, d), { recursive: true, force: true });
  }
}

export type Verdict = { ok: true; manifest: Manifest | null } | { ok: false; reason: string };

/**
 * Whether a directory's files match its manifest (sizes first, then hashes).
 * A directory without a manifest (written before manifests existed) is
 * accepted as it is: `manifest` is null.
 */
export function verifyDir(dir: string): Verdict {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) return { ok: true, manifest: null };
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  } catch (err) {
    return { ok: false, reason: `unreadable manifest: ${errorMessage(err)}` };
  }
  for (const [f, want] of Object.entries(manifest.files ?? {})) {
    const p = join(dir, f);
    if (!existsSync(p)) return { ok: false, reason: `${f} is missing` };
    const size = statSync(p).size;
    if (size !== want.bytes)
      return { ok: false, reason: `${f} has ${size} bytes, the manifest says ${want.bytes}` };
  }
  for (const [f, want] of Object.entries(manifest.files)) {
    const h = createHash('sha256');
    streamFile(join(dir, f), h);
    if (h.digest('hex') !== want.sha256) return { ok: false, reason: `${f} does not match its sha256` };
  }
  return { ok: true, manifest };
}

/**
 * The newest directory under `root` matching `pattern` (names sort by age)
 * that `accept` takes and whose files match its manifest; torn ones are
 * reported through `onTorn` and skipped.
 */
export function newestIntact(
  root: string,
  pattern: RegExp,
  accept: (dir: string) => boolean,
  onTorn: (dir: string, reason: string) => void = () => {},
): string | null {
  if (!existsSync(root)) return null;
  const dirs = readdirSync(root)
    .filter((d) => pattern.test(d) && accept(join(root, d)))
    .sort()
    .reverse();
  for (const d of dirs) {
    const verdict = verifyDir(join(root, d));
    if (verdict.ok) return join(root, d);
    onTorn(join(root, d), verdict.reason);
  }
  return null;
}
