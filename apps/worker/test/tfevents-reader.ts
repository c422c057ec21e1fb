// An independent reader of TensorBoard event files, for tests: TFRecord
// framing checked with @aws-crypto/crc32c, and the protobuf messages decoded
// by protobufjs from definitions copied out of TensorFlow's and TensorBoard's
// .proto files (field numbers as published). Nothing here comes from
// src/tensorboard.ts, so a wrong field number or CRC in the writer fails.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c } from '@aws-crypto/crc32c';
import protobuf from 'protobufjs';

const PROTO = `
syntax = "proto3";
package tensorflow;

message Event {
  double wall_time = 1;
  int64 step = 2;
  oneof what {
    string file_version = 3;
    bytes graph_def = 4;
    Summary summary = 5;
    SessionLog session_log = 7;
  }
}
message SessionLog {
  enum SessionStatus { STATUS_UNSPECIFIED = 0; START = 1; STOP = 2; CHECKPOINT = 3; }
  SessionStatus status = 1;
  string checkpoint_path = 2;
  string msg = 3;
}
message Summary {
  message Value {
    string node_name = 7;
    string tag = 1;
    SummaryMetadata metadata = 9;
    oneof value {
      float simple_value = 2;
      bytes obsolete_old_style_histogram = 3;
      TensorProto tensor = 8;
    }
  }
  repeated Value value = 1;
}
message SummaryMetadata {
  message PluginData { string plugin_name = 1; bytes content = 2; }
  PluginData plugin_data = 1;
  string display_name = 2;
  string summary_description = 3;
  int32 data_class = 4;
}
message TensorShapeProto {
  message Dim { int64 size = 1; string name = 2; }
  repeated Dim dim = 2;
  bool unknown_rank = 3;
}
message TensorProto {
  int32 dtype = 1;
  TensorShapeProto tensor_shape = 2;
  int32 version_number = 3;
  bytes tensor_content = 4;
  repeated int32 half_val = 13 [packed = true];
  repeated float float_val = 5 [packed = true];
  repeated double double_val = 6 [packed = true];
}

// tensorboard/plugins/hparams/plugin_data.proto (with google.protobuf.Value inlined)
message ProtobufValue {
  oneof kind {
    int32 null_value = 1;
    double number_value = 2;
    string string_value = 3;
    bool bool_value = 4;
  }
}
message HParamsPluginData {
  int32 version = 1;
  oneof data {
    bytes experiment = 2;
    SessionStartInfo session_start_info = 3;
    SessionEndInfo session_end_info = 4;
  }
}
message SessionStartInfo {
  map<string, ProtobufValue> hparams = 1;
  string model_uri = 2;
  string monitor_url = 3;
  string group_name = 4;
  double start_time_secs = 5;
}
message SessionEndInfo {
  int32 status = 1;
  double end_time_secs = 2;
}
`;

const root = protobuf.parse(PROTO, { keepCase: true }).root;
const Event = root.lookupType('tensorflow.Event');
const HParams = root.lookupType('tensorflow.HParamsPluginData');

const masked = (c: number) => ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;

export class CrcError extends Error {}

/** The records of a TFRecord file; throws CrcError on any length or data checksum mismatch. */
export function readRecords(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    if (off + 12 > buf.length) throw new CrcError(`truncated header at ${off}`);
    const lenBytes = buf.subarray(off, off + 8);
    if (masked(crc32c(lenBytes)) !== buf.readUInt32LE(off + 8))
      throw new CrcError(`length checksum mismatch at ${off}`);
    const len = Number(buf.readBigUInt64LE(off));
    const data = buf.subarray(off + 12, off + 12 + len);
    if (data.length !== len || off + 16 + len > buf.length) throw new CrcError(`truncated record at ${off}`);
    if (masked(crc32c(data)) !== buf.readUInt32LE(off + 12 + len))
      throw new CrcError(`data checksum mismatch at ${off}`);
    out.push(Buffer.from(data));
    off += 16 + len;
  }
  return out;
}

export interface DecodedEvent {
  wall_time: number;
  step: number;
  file_version?: string;
  session_log?: { status: string };
  summary?: {
    value: Array<{
      tag: string;
      metadata?: { plugin_data?: { plugin_name: string; content: Uint8Array }; data_class?: number };
      simple_value?: number;
      tensor?: { dtype: number; double_val: number[]; float_val: number[] };
    }>;
  };
}

export function readEvents(file: string): DecodedEvent[] {
  return readRecords(readFileSync(file)).map(
    (r) => Event.toObject(Event.decode(r), { longs: Number, enums: String, defaults: false }) as DecodedEvent,
  );
}

/** The event files of a directory, in the order TensorBoard reads them (by name). */
export function eventFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.includes('tfevents'))
    .sort()
    .map((f) => join(dir, f));
}

/** Every scalar of the files as `tag@step` → value (scalars plugin tensors or simple values). */
export function scalarsOf(events: DecodedEvent[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of events)
    for (const v of e.summary?.value ?? []) {
      if (v.metadata?.plugin_data?.plugin_name === 'hparams') continue;
      const x = v.simple_value ?? v.tensor?.double_val?.[0] ?? v.tensor?.float_val?.[0];
      if (x !== undefined) out.set(`${v.tag}@${e.step}`, x);
    }
  return out;
}

export interface DecodedHParams {
  session_start_info?: {
    hparams: Record<string, { number_value?: number; string_value?: string; bool_value?: boolean }>;
    group_name?: string;
  };
  session_end_info?: { status: number };
}

/** The hparams plugin payloads of the files, by tag. */
export function hparamsOf(events: DecodedEvent[]): Map<string, DecodedHParams> {
  const out = new Map<string, DecodedHParams>();
  for (const e of events)
    for (const v of e.summary?.value ?? []) {
      const p = v.metadata?.plugin_data;
      if (p?.plugin_name !== 'hparams') continue;
      out.set(
        v.tag,
        HParams.toObject(HParams.decode(p.content), { longs: Number, defaults: false }) as DecodedHParams,
      );
    }
  return out;
}
