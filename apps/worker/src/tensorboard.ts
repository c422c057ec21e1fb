// TensorBoard event files, written without TensorFlow: a file of TFRecords,
// each record one serialized `Event` protobuf. Formats, from their specs:
//
//   TFRecord (tensorflow/core/lib/io/record_writer.cc):
//     uint64 length (little-endian) | uint32 masked_crc32c(length bytes)
//     | data[length] | uint32 masked_crc32c(data)
//     masked(c) = ((c >>> 15) | (c << 17)) + 0xa282ead8   (mod 2^32)
//   Event (tensorflow/core/util/event.proto):
//     double wall_time = 1; int64 step = 2; string file_version = 3;
//     Summary summary = 5; SessionLog session_log = 7;
//   Summary (tensorflow/core/framework/summary.proto): repeated Value value = 1;
//     Value { string tag = 1; TensorProto tensor = 8; SummaryMetadata metadata = 9; }
//     SummaryMetadata { PluginData plugin_data = 1 { string plugin_name = 1; bytes content = 2; };
//                       DataClass data_class = 4; }   (DATA_CLASS_SCALAR = 1)
//   TensorProto (tensor.proto): DataType dtype = 1 (DT_FLOAT = 1, DT_DOUBLE = 2);
//     TensorShapeProto tensor_shape = 2 (no dims: a scalar); float_val = 5; double_val = 6 (packed)
//   HParams (tensorboard/plugins/hparams/plugin_data.proto): HParamsPluginData {
//     int32 version = 1; SessionStartInfo session_start_info = 3; SessionEndInfo session_end_info = 4; }
//     SessionStartInfo { map<string, google.protobuf.Value> hparams = 1; string group_name = 4;
//                        double start_time_secs = 5; }
//     SessionEndInfo { Status status = 1; double end_time_secs = 2; }  (UNKNOWN 0, SUCCESS 1, FAILURE 2, RUNNING 3)
//     google.protobuf.Value { double number_value = 2; string string_value = 3; bool bool_value = 4; }
//   SessionLog (event.proto): SessionStatus status = 1 (START = 1): after a run's first START,
//     each later one makes TensorBoard drop what was recorded at steps >= its step (a restart),
//     which is what a resumed trial needs.
//
// Scalars are written as tf.summary.scalar (v2) writes them: a scalar tensor
// with the "scalars" plugin metadata, here float64 so no precision is lost.
// The hparams dashboard takes a trial's hyperparameters from its
// session_start_info and its metrics from the scalars of the same run
// directory (no experiment summary is needed: TensorBoard infers it).
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

// ---------------------------------------------------------------------------------------------
// CRC32C (Castagnoli, reflected polynomial 0x82f63b78), table-driven.

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const maskedCrc = (bytes: Uint8Array) => {
  const c = crc32c(bytes);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
};

/** One TFRecord around `data`. */
export function tfRecord(data: Uint8Array): Buffer {
  const header = Buffer.alloc(12);
  header.writeBigUInt64LE(BigInt(data.length), 0);
  header.writeUInt32LE(maskedCrc(header.subarray(0, 8)), 8);
  const footer = Buffer.alloc(4);
  footer.writeUInt32LE(maskedCrc(data), 0);
  return Buffer.concat([header, data, footer]);
}

// ---------------------------------------------------------------------------------------------
// Protobuf wire encoding: just the field kinds the messages above use.

type Field = Buffer;

function varint(n: number | bigint): Buffer {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v) byte |= 0x80;
    out.push(byte);
  } while (v);
  return Buffer.from(out);
}
const tag = (field: number, wire: number) => varint((field << 3) | wire);
const f64 = (field: number, x: number) => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(x);
  return Buffer.concat([tag(field, 1), b]);
};
const f32 = (field: number, x: number) => {
  const b = Buffer.alloc(4);
  b.writeFloatLE(x);
  return Buffer.concat([tag(field, 5), b]);
};
const int = (field: number, n: number | bigint) => Buffer.concat([tag(field, 0), varint(n)]);
const bytes = (field: number, b: Uint8Array | string) => {
  const buf = typeof b === 'string' ? Buffer.from(b, 'utf8') : Buffer.from(b);
  return Buffer.concat([tag(field, 2), varint(buf.length), buf]);
};
const message = (field: number, ...fields: Field[]) => bytes(field, Buffer.concat(fields));

const DT_FLOAT = 1;
const DT_DOUBLE = 2;
const DATA_CLASS_SCALAR = 1;
const DATA_CLASS_TENSOR = 2;

const scalarValue = (name: string, x: number) =>
  message(
    1,
    bytes(1, name),
    message(8, int(1, DT_DOUBLE), message(2), f64(6, x)),
    message(9, message(1, bytes(1, 'scalars')), int(4, DATA_CLASS_SCALAR)),
  );

/** A summary value of the hparams plugin (a null float tensor, as TensorBoard's own summary.py writes). */
const hparamsValue = (name: string, pluginData: Buffer) =>
  message(
    1,
    bytes(1, name),
    message(8, int(1, DT_FLOAT), message(2), f32(5, 0)),
    message(9, message(1, bytes(1, 'hparams'), bytes(2, pluginData)), int(4, DATA_CLASS_TENSOR)),
  );

export type HParamValue = number | string | boolean;

function protobufValue(v: HParamValue): Buffer {
  if (typeof v === 'number') return f64(2, v);
  if (typeof v === 'boolean') return int(4, v ? 1 : 0);
  return bytes(3, v);
}

export type SessionStatus = 'UNKNOWN' | 'SUCCESS' | 'FAILURE' | 'RUNNING';
const SESSION_STATUS: Record<SessionStatus, number> = { UNKNOWN: 0, SUCCESS: 1, FAILURE: 2, RUNNING: 3 };

/** Hyperparameters TensorBoard can show: numbers, strings and booleans; anything else as its JSON. */
export function flattenHParams(params: Record<string, unknown>, prefix = ''): Record<string, HParamValue> {
  const out: Record<string, HParamValue> = {};
  for (const [k, v] of Object.entries(params)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') out[key] = v;
    else if (v && typeof v === 'object' && !Array.isArray(v))
      Object.assign(out, flattenHParams(v as Record<string, unknown>, key));
    else if (v !== undefined && v !== null) out[key] = JSON.stringify(v);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

export interface EventWriterOptions {
  /** Write to disk once this many bytes wait (default 32 KiB); close() and flush() write the rest. */
  flushBytes?: number;
  /** ... or when the oldest waiting record is this old at the next add (default 2 s). */
  flushMs?: number;
  /** The part of the file name after the pid, to keep two writers of one process apart. */
  suffix?: string;
  now?: () => number;
}

let fileCounter = 0;

/**
 * Appends events to one `events.out.tfevents.<secs>.<host>.<pid>.<n>` file in
 * `dir`, the name TensorBoard looks for. Writes are synchronous appends of
 * whole records, so a crash leaves at most a missing tail, never a torn record
 * before a good one.
 */
export class EventWriter {
  readonly path: string;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private oldest: number | null = null;
  private readonly now: () => number;

  constructor(
    dir: string,
    private readonly opts: EventWriterOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    mkdirSync(dir, { recursive: true });
    const secs = Math.floor(this.now() / 1000);
    this.path = join(
      dir,
      `events.out.tfevents.${secs}.${hostname()}.${process.pid}.${opts.suffix ?? ++fileCounter}`,
    );
    writeFileSync(this.path, this.record(0, bytes(3, 'brain.Event:2')));
  }

  /** One scalar per tag at `step`. */
  scalars(step: number, values: Record<string, number>): void {
    const fields = Object.entries(values)
      .filter(([, x]) => Number.isFinite(x))
      .map(([name, x]) => scalarValue(name, x));
    if (fields.length) this.add(step, message(5, ...fields));
  }

  /** A (re)start at `step`: TensorBoard discards what was recorded before it at steps >= step. */
  sessionStart(step: number): void {
    this.add(step, message(7, int(1, 1)));
  }

  /** The trial's hyperparameters (hparams dashboard); `group` groups the trials of one sweep. */
  hparams(values: Record<string, HParamValue>, group: string): void {
    const entries = Object.entries(values).map(([k, v]) =>
      message(1, bytes(1, k), message(2, protobufValue(v))),
    );
    const start = Buffer.concat([...entries, bytes(4, group), f64(5, this.now() / 1000)]);
    const data = Buffer.concat([int(1, 0), message(3, start)]);
    this.add(0, message(5, hparamsValue('_hparams_/session_start_info', data)));
  }

  /** How the trial ended (hparams dashboard "Session status"). */
  sessionEnd(status: SessionStatus, step: number): void {
    const end = Buffer.concat([int(1, SESSION_STATUS[status]), f64(2, this.now() / 1000)]);
    const data = Buffer.concat([int(1, 0), message(4, end)]);
    this.add(step, message(5, hparamsValue('_hparams_/session_end_info', data)));
  }

  flush(): void {
    if (!this.pending.length) return;
    appendFileSync(this.path, Buffer.concat(this.pending));
    this.pending = [];
    this.pendingBytes = 0;
    this.oldest = null;
  }

  close(): void {
    this.flush();
  }

  private record(step: number, what: Buffer): Buffer {
    return tfRecord(Buffer.concat([f64(1, this.now() / 1000), int(2, step), what]));
  }

  private add(step: number, what: Buffer): void {
    const r = this.record(step, what);
    this.pending.push(r);
    this.pendingBytes += r.length;
    this.oldest ??= this.now();
    if (
      this.pendingBytes >= (this.opts.flushBytes ?? 32 * 1024) ||
      this.now() - this.oldest >= (this.opts.flushMs ?? 2_000)
    )
      this.flush();
  }
}
