// safetensors headers: [u64 little-endian header length][JSON header][tensor bytes]. The JSON maps
// tensor names to {dtype, shape, data_offsets: [begin, end)} relative to the end of the header.
// Bytes are moved by the addon (tensor_io.cpp); names, shapes and offsets are checked here.
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from './errors.js';

export type StDtype = 'F32' | 'F16' | 'BF16';
export const DTYPE_BYTES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface StTensor {
  name: string;
  file: string;
  dtype: string;
  shape: number[];
  /** Absolute byte offset of the data in the file. */
  fileOffset: number;
  nbytes: number;
}

export interface StFile {
  path: string;
  tensors: Map<string, StTensor>;
  metadata: Record<string, string>;
}

export async function readSafetensorsHeader(path: string): Promise<StFile> {
  const fh = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new Error(`cannot open ${path}: ${e.code ?? e.message}`);
  });
  try {
    const size = (await fh.stat()).size;
    const lenBuf = Buffer.alloc(8);
    if (size < 8 || (await fh.read(lenBuf, 0, 8, 0)).bytesRead !== 8)
      throw new Error(`${path}: not a safetensors file (too short)`);
    const hlen = Number(lenBuf.readBigUInt64LE(0));
    if (hlen <= 0 || 8 + hlen > size || hlen > 100 * 1024 * 1024)
      throw new Error(`${path}: not a safetensors file (bad header length)`);
    const hbuf = Buffer.alloc(hlen);
    await fh.read(hbuf, 0, hlen, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(hbuf.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new Error(`${path}: not a safetensors file (header is not JSON)`);
    }
    const base = 8 + hlen;
    const tensors = new Map<string, StTensor>();
    let metadata: Record<string, string> = {};
    for (const [name, v] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = (v ?? {}) as Record<string, string>;
        continue;
      }
      const t = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
      const [b, e] = t.data_offsets;
      if (base + e > size || b > e) throw new Error(`${path}: tensor ${name} lies outside the file`);
      tensors.set(name, {
        name,
        file: path,
        dtype: t.dtype,
        shape: t.shape,
        fileOffset: base + b,
        nbytes: e - b,
      });
    }
    return { path, tensors, metadata };
  } finally {
    await fh.close();
  }
}

/**
 * All tensors of a checkpoint directory: model.safetensors, or the shards listed by
 * model.safetensors.index.json.
 */
export async function readCheckpointTensors(dir: string): Promise<Map<string, StTensor>> {
  const index = join(dir, 'model.safetensors.index.json');
  const single = join(dir, 'model.safetensors');
  const exists = async (p: string) => (await stat(p).catch(() => null))?.isFile() ?? false;
  if (await exists(index)) {
    let weightMap: Record<string, string>;
    try {
      weightMap = (JSON.parse(await readFile(index, 'utf8')) as { weight_map: Record<string, string> })
        .weight_map;
    } catch (e) {
      throw new Error(`${index}: cannot parse (${errorMessage(e)})`);
    }
    if (!weightMap || typeof weightMap !== 'object') throw new Error(`${index}: no weight_map`);
    const files = [...new Set(Object.values(weightMap))];
    const all = new Map<string, StTensor>();
    for (const f of files) {
      const st = await readSafetensorsHeader(join(dir, f));
      for (const [name, t] of st.tensors) if (weightMap[name] === f) all.set(name, t);
    }
    for (const name of Object.keys(weightMap)) {
      if (!all.has(name)) throw new Error(`${index}: tensor ${name} is not in shard ${weightMap[name]}`);
    }
    return all;
  }
  if (await exists(single)) return (await readSafetensorsHeader(single)).tensors;
  throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json`);
}

export interface HeaderEntry {
  name: string;
  dtype: StDtype;
  shape: number[];
}

/** JSON header (padded to 8 bytes as safetensors recommends) for tensors written back to back. */
export function buildHeader(entries: HeaderEntry[], metadata: Record<string, string> = {}): string {
  const h: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  for (const e of entries) {
    const n = e.shape.reduce((a, b) => a * b, 1) * (DTYPE_BYTES[e.dtype] ?? 4);
    h[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let s = JSON.stringify(h);
  const bytes = Buffer.byteLength(s, 'utf8');
  s += ' '.repeat((8 - ((8 + bytes) % 8)) % 8);
  return s;
}

/**
 * transformers' `save_pretrained(max_shard_size="5GB")` default: checkpoints above 5 GB are split
 * into `model-0000i-of-0000n.safetensors` files with a `model.safetensors.index.json`.
 */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

export interface ShardPlan<T> {
  /** `model.safetensors` when one file suffices, else `model-00001-of-00003.safetensors`, ... */
  file: string;
  entries: T[];
  bytes: number;
}

/**
 * Splits tensors, in order, into files of at most `maxBytes` each (a tensor larger than the limit
 * gets a file of its own), as huggingface_hub's split_torch_state_dict_into_shards does.
 */
export function planShards<T extends HeaderEntry>(entries: T[], maxBytes: number): ShardPlan<T>[] {
  if (!(maxBytes > 0)) throw new Error(`max shard size must be positive, got ${maxBytes}`);
  const groups: { entries: T[]; bytes: number }[] = [];
  let cur: { entries: T[]; bytes: number } = { entries: [], bytes: 0 };
  for (const e of entries) {
    const n = e.shape.reduce((a, b) => a * b, 1) * (DTYPE_BYTES[e.dtype] ?? 4);
    if (cur.entries.length > 0 && cur.bytes + n > maxBytes) {
      groups.push(cur);
      cur = { entries: [], bytes: 0 };
    }
    cur.entries.push(e);
    cur.bytes += n;
  }
  if (cur.entries.length > 0) groups.push(cur);
  const pad = (i: number) => String(i).padStart(5, '0');
  return groups.map((g, i) => ({
    ...g,
    file:
      groups.length === 1 ? 'model.safetensors' : `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`,
  }));
}

/** model.safetensors.index.json for a sharded save (transformers' field names). */
export function shardIndex(plans: ShardPlan<HeaderEntry>[]): {
  metadata: { total_size: number };
  weight_map: Record<string, string>;
} {
  const weight_map: Record<string, string> = {};
  for (const p of plans) for (const e of p.entries) weight_map[e.name] = p.file;
  return { metadata: { total_size: plans.reduce((a, p) => a + p.bytes, 0) }, weight_map };
}
