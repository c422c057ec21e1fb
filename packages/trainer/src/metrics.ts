// Step metrics as sums and counts. A metric is a mean over some examples: over the whole batch for most, over one
// language's examples for `rg/target/zh` and the like. Averaging micro-batch means weighted by micro-batch size
// halves a language that sits in one micro-batch of two (a batch value of −0.250 logged as −0.125), and logging
// rank 0's share leaves out the other ranks' examples. Here each metric accumulates Σ value·count and Σ count over
// micro-batches and then over ranks, and the logged value is their ratio: the mean over every example it covers.
import type { Communicator } from './types.js';

export class MetricSums {
  private readonly sums = new Map<string, [sum: number, count: number]>();

  /** A mean `value` over `count` examples. */
  add(name: string, value: number, count: number): void {
    if (count <= 0) return;
    const acc = this.sums.get(name) ?? [0, 0];
    acc[0] += value * count;
    acc[1] += count;
    this.sums.set(name, acc);
  }

  /** An objective's metrics: those named in `counts` cover that many examples, the rest `batchSize`. */
  addAll(
    metrics: Record<string, number>,
    counts: Record<string, number> | undefined,
    batchSize: number,
  ): void {
    for (const [k, v] of Object.entries(metrics)) this.add(k, v, counts?.[k] ?? batchSize);
  }

  names(): string[] {
    return [...this.sums.keys()].sort();
  }

  /** Σ value·count / Σ count per metric. */
  means(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const k of this.names()) {
      const [s, c] = this.sums.get(k)!;
      out[k] = s / c;
    }
    return out;
  }

  /**
   * Sums every metric over the ranks. Ranks may hold different metric names (a language only one rank's shard
   * has), so the names are gathered first; a sum travels as two float32 halves (hi + lo) so the float32 all-reduce
   * keeps it to ~1e-14 relative.
   */
  async reduce(comm: Communicator): Promise<void> {
    const names = await gatherNames(comm, this.names());
    const buf = new Float32Array(names.length * 3);
    names.forEach((k, i) => {
      const [s, c] = this.sums.get(k) ?? [0, 0];
      const hi = Math.fround(s);
      buf[3 * i] = hi;
      buf[3 * i + 1] = s - hi;
      buf[3 * i + 2] = c;
    });
    await comm.allReduceSum(buf);
    this.sums.clear();
    names.forEach((k, i) => {
      this.sums.set(k, [buf[3 * i]! + buf[3 * i + 1]!, buf[3 * i + 2]!]);
    });
  }
}

/**
 * The sorted union of every rank's names, through sum all-reduces only: each rank writes its UTF-8 bytes into its
 * own slot of a zeroed buffer (bytes and lengths are exact in float32), so the sum is every rank's bytes.
 */
export async function gatherNames(comm: Communicator, names: readonly string[]): Promise<string[]> {
  const mine = new TextEncoder().encode(JSON.stringify(names));
  const lengths = new Float32Array(comm.worldSize);
  lengths[comm.rank] = mine.length;
  await comm.allReduceSum(lengths);
  const offsets = [0];
  for (const l of lengths) offsets.push(offsets.at(-1)! + l);
  const bytes = new Float32Array(offsets.at(-1)!);
  bytes.set(mine, offsets[comm.rank]);
  await comm.allReduceSum(bytes);
  const all = new Set<string>();
  const decoder = new TextDecoder();
  for (let r = 0; r < comm.worldSize; r++) {
    const slice = Uint8Array.from(bytes.subarray(offsets[r], offsets[r + 1]));
    for (const n of JSON.parse(decoder.decode(slice)) as string[]) all.add(n);
  }
  return [...all].sort();
}
