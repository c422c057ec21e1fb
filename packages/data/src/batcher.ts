// Micro-batches over epochs with a cursor that a checkpoint can save and a resumed run can restore.
import { permutation } from './rng.js';

export interface BatcherOptions {
  batchSize: number;
  seed: number;
  /** Reshuffle every epoch (default true); false keeps file order. */
  shuffle?: boolean;
  /** Skip an epoch's last, smaller batch (default false). */
  dropLast?: boolean;
}

/**
 * Everything needed to continue where a run stopped. Each epoch's order is a pure function of (seed, epoch), so
 * no generator state is needed beyond the position; size and options are kept to refuse a resume on other data.
 */
export interface BatchCursor {
  seed: number;
  epoch: number;
  /** Items of this epoch's order already yielded. */
  position: number;
  size: number;
  batchSize: number;
  shuffle: boolean;
  dropLast: boolean;
}

export interface Batch<T> {
  items: T[];
  /** Indices into the original items. */
  indices: number[];
  epoch: number;
  /** Batch number within the epoch, from 0. */
  index: number;
}

export class Batcher<T> {
  private readonly items: readonly T[];
  private readonly opts: Required<BatcherOptions>;
  private epoch = 0;
  private position = 0;
  private order: number[] = [];
  private orderEpoch = -1;

  constructor(items: readonly T[], opts: BatcherOptions, cursor?: BatchCursor) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) {
      throw new RangeError(`batchSize must be a positive integer, got ${opts.batchSize}`);
    }
    if (!Number.isSafeInteger(opts.seed))
      throw new RangeError(`seed must be a safe integer, got ${opts.seed}`);
    if (items.length === 0) throw new RangeError('cannot batch an empty dataset');
    this.items = items;
    this.opts = { shuffle: true, dropLast: false, ...opts };
    if (this.opts.dropLast && items.length < this.opts.batchSize) {
      throw new RangeError(
        `dropLast with ${items.length} items < batchSize ${this.opts.batchSize} yields nothing`,
      );
    }
    if (cursor) this.restore(cursor);
  }

  /** Batches in one epoch. */
  get batchesPerEpoch(): number {
    const n = this.items.length;
    const b = this.opts.batchSize;
    return this.opts.dropLast ? Math.floor(n / b) : Math.ceil(n / b);
  }

  /** The order of an epoch: a seeded permutation, or file order without shuffling. */
  epochOrder(epoch: number): number[] {
    const n = this.items.length;
    if (!this.opts.shuffle) return Array.from({ length: n }, (_, i) => i);
    // A string seed keeps (seed, epoch) pairs apart: (1, 10) and (11, 0) must not collide.
    return permutation(n, `${this.opts.seed}/${epoch}`);
  }

  /** The next micro-batch; epochs continue indefinitely (the trainer decides when to stop). */
  next(): Batch<T> {
    const n = this.items.length;
    const b = this.opts.batchSize;
    const end = this.opts.dropLast ? n - (n % b) : n;
    if (this.position >= end) {
      this.epoch++;
      this.position = 0;
    }
    if (this.orderEpoch !== this.epoch) {
      this.order = this.epochOrder(this.epoch);
      this.orderEpoch = this.epoch;
    }
    const indices = this.order.slice(this.position, Math.min(this.position + b, end));
    const batch = {
      items: indices.map((i) => this.items[i]!),
      indices,
      epoch: this.epoch,
      index: Math.floor(this.position / b),
    };
    this.position += indices.length;
    return batch;
  }

  /** Where the next call to next() will continue from; JSON-serialisable. */
  cursor(): BatchCursor {
    return {
      seed: this.opts.seed,
      epoch: this.epoch,
      position: this.position,
      size: this.items.length,
      batchSize: this.opts.batchSize,
      shuffle: this.opts.shuffle,
      dropLast: this.opts.dropLast,
    };
  }

  private restore(c: BatchCursor): void {
    const mine = this.cursor();
    for (const k of ['seed', 'size', 'batchSize', 'shuffle', 'dropLast'] as const) {
      if (c[k] !== mine[k]) {
        throw new Error(
          `cannot resume: cursor ${k} is ${JSON.stringify(c[k])}, this batcher's is ${JSON.stringify(mine[k])}`,
        );
      }
    }
    if (
      !Number.isInteger(c.epoch) ||
      c.epoch < 0 ||
      !Number.isInteger(c.position) ||
      c.position < 0 ||
      c.position > c.size
    ) {
      throw new Error(`cannot resume: bad cursor position epoch=${c.epoch} position=${c.position}`);
    }
    this.epoch = c.epoch;
    this.position = c.position;
  }
}
