// Reference precompute: one no-grad pass with the initial weights over every
// example, for each group the objective asks of the reference; cached on disk
// under a key hashing (weights, data, template, cutoff, requests) and reused by
// every trial of a sweep. The training step never runs a reference model.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GroupRequest, ScoresByGroup, SequenceScores } from '@mpo/objectives';
import { writeFileWhole } from '@mpo/util';
import type { TrainableModel } from './model.js';
import { PAD_MULTIPLE, scoreGroups } from './scoring.js';
import type { TrainExample } from './types.js';

const FIELDS = ['sumLogp', 'tokens', 'lastHidden', 'meanHidden', 'meanUnmaskedHidden'] as const;
type Field = (typeof FIELDS)[number];
type Typed = Float64Array | Int32Array | Float32Array;
const CTORS: Record<Field, { new (b: ArrayBuffer, o: number, l: number): Typed; BYTES_PER_ELEMENT: number }> =
  {
    sumLogp: Float64Array,
    tokens: Int32Array,
    lastHidden: Float32Array,
    meanHidden: Float32Array,
    meanUnmaskedHidden: Float32Array,
  };

/** Requests the cache can serve: KL needs the reference's full distributions at train time instead. */
export const precomputable = (r: GroupRequest) => r.sumLogp || r.hidden !== undefined;

/** sha256 over the token ids of every example, in order. */
export function datasetHash(examples: readonly TrainExample[]): string {
  const h = createHash('sha256');
  for (const ex of examples) h.update(JSON.stringify(ex)).update('\n');
  return h.digest('hex');
}

export function referenceCacheKey(parts: {
  weightsHash: string;
  dataHash: string;
  template: string;
  cutoff: number;
  requests: readonly GroupRequest[];
}): string {
  // The batch layout is part of the key: padding-dependent pooling changes with it.
  const layout = { padMultiple: PAD_MULTIPLE, pairPadding: 'per-example' };
  return createHash('sha256')
    .update(JSON.stringify({ ...parts, layout }))
    .digest('hex')
    .slice(0, 32);
}

export async function computeReference(
  model: TrainableModel,
  examples: readonly TrainExample[],
  requests: readonly GroupRequest[],
  chunk = 8,
): Promise<ScoresByGroup> {
  // The same batch layout as the training step (scoring.ts), so that padding-dependent pooling agrees.
  const { scores } = await scoreGroups(model, examples, requests.filter(precomputable), {
    grad: false,
    chunk,
  });
  return scores;
}

/** Loads the cached reference scores for `key`, or computes and stores them. */
export async function cachedReference(
  cacheDir: string,
  key: string,
  compute: () => Promise<ScoresByGroup>,
): Promise<{ scores: ScoresByGroup; hit: boolean; path: string }> {
  const path = join(cacheDir, `reference-${key}.bin`);
  if (existsSync(path)) return { scores: decode(readFileSync(path)), hit: true, path };
  const scores = await compute();
  mkdirSync(cacheDir, { recursive: true });
  // Concurrent trials of a sweep may race: each writes a whole file of its own, then renames it.
  writeFileWhole(path, encode(scores));
  return { scores, hit: false, path };
}

export function concatScores(parts: readonly SequenceScores[]): SequenceScores {
  const first = parts[0];
  if (!first) throw new Error('concatScores: no parts');
  const n = parts.reduce((a, p) => a + p.n, 0);
  const out: SequenceScores = {
    n,
    hiddenSize: first.hiddenSize,
    sumLogp: new Float64Array(n),
    tokens: new Int32Array(n),
  };
  for (const f of FIELDS) {
    if (first[f] === undefined) continue;
    const per = first[f].length / first.n;
    const Ctor = CTORS[f] as unknown as new (n: number) => Typed;
    const arr = new Ctor(n * per);
    let off = 0;
    for (const p of parts) {
      arr.set(p[f] as never, off);
      off += p.n * per;
    }
    (out as unknown as Record<Field, Typed>)[f] = arr;
  }
  return out;
}

/** Rows `indices` of every field. */
export function sliceScores(s: SequenceScores, indices: readonly number[]): SequenceScores {
  const out: SequenceScores = {
    n: indices.length,
    hiddenSize: s.hiddenSize,
    sumLogp: new Float64Array(indices.length),
    tokens: new Int32Array(indices.length),
  };
  for (const f of FIELDS) {
    const src = s[f];
    if (src === undefined) continue;
    const per = src.length / s.n;
    const Ctor = CTORS[f] as unknown as new (n: number) => Typed;
    const arr = new Ctor(indices.length * per);
    indices.forEach((row, i) => {
      arr.set(src.subarray(row * per, (row + 1) * per) as never, i * per);
    });
    (out as unknown as Record<Field, Typed>)[f] = arr;
  }
  return out;
}

export function sliceAll(scores: ScoresByGroup, indices: readonly number[]): ScoresByGroup {
  const out: ScoresByGroup = {};
  for (const [g, s] of Object.entries(scores)) out[g as keyof ScoresByGroup] = sliceScores(s, indices);
  return out;
}

// File: "MPOREF1\n", u32 header length, JSON header, then 8-byte aligned arrays.
const MAGIC = Buffer.from('MPOREF1\n');

function encode(scores: ScoresByGroup): Buffer {
  const chunks: Buffer[] = [];
  const header: Record<string, { n: number; hiddenSize: number; fields: Record<string, [number, number]> }> =
    {};
  let offset = 0;
  for (const [g, s] of Object.entries(scores)) {
    header[g] = { n: s.n, hiddenSize: s.hiddenSize, fields: {} };
    for (const f of FIELDS) {
      const arr = s[f];
      if (arr === undefined) continue;
      const buf = Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength);
      const pad = (8 - (buf.length % 8)) % 8;
      header[g].fields[f] = [offset, arr.length];
      chunks.push(buf, Buffer.alloc(pad));
      offset += buf.length + pad;
    }
  }
  const json = Buffer.from(JSON.stringify(header));
  const jsonPad = Buffer.alloc((8 - ((MAGIC.length + 4 + json.length) % 8)) % 8, 0x20);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length + jsonPad.length);
  return Buffer.concat([MAGIC, len, json, jsonPad, ...chunks]);
}

function decode(file: Buffer): ScoresByGroup {
  if (!file.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('reference cache: bad magic');
  const hlen = file.readUInt32LE(MAGIC.length);
  const base = MAGIC.length + 4 + hlen;
  const header = JSON.parse(file.subarray(MAGIC.length + 4, base).toString());
  // Copy into an aligned buffer so typed views are legal.
  const body = new Uint8Array(file.length - base);
  body.set(file.subarray(base));
  const out: ScoresByGroup = {};
  for (const [g, h] of Object.entries(header) as [
    string,
    { n: number; hiddenSize: number; fields: Record<Field, [number, number]> },
  ][]) {
    const s = { n: h.n, hiddenSize: h.hiddenSize } as SequenceScores;
    for (const [f, [off, len]] of Object.entries(h.fields) as [Field, [number, number]][]) {
      (s as unknown as Record<Field, Typed>)[f] = new CTORS[f](body.buffer, off, len);
    }
    out[g as keyof ScoresByGroup] = s;
  }
  return out;
}
