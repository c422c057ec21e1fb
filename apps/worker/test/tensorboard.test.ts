// TensorBoard event files (src/tensorboard.ts, src/trial-events.ts) read back
// by an independent reader (test/tfevents-reader.ts: protobufjs with the
// published .proto field numbers, CRC32C from @aws-crypto/crc32c).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c as referenceCrc } from '@aws-crypto/crc32c';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { crc32c, EventWriter, flattenHParams } from '../src/tensorboard.js';
import { TrialEvents } from '../src/trial-events.js';
import { CrcError, eventFiles, hparamsOf, readEvents, readRecords, scalarsOf } from './tfevents-reader.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'mpo-tb-'));

describe('CRC32C', () => {
  it('matches the published check value and an independent implementation', () => {
    // RFC 3720 B.4 / the CRC catalogue: CRC-32C("123456789") = 0xe3069283.
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    // RFC 3720 B.4: 32 bytes of zeros → 0x8a9136aa.
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    const random = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7919 + 13) % 256));
    expect(crc32c(random)).toBe(referenceCrc(random));
  });
});

describe('EventWriter', () => {
  it('writes records an independent reader decodes: version, float64 scalars, hparams, session status', () => {
    const dir = tmp();
    const w = new EventWriter(dir, { now: () => 1_700_000_000_500 });
    w.hparams({ method: 'mpo', beta: 0.1, 'training.steps': 12, bf16: true }, 'run-1');
    w.scalars(1, { loss: Math.LN2, 'rg/zh': -0.125 });
    w.scalars(2, { loss: 0.5, bad: Number.NaN });
    w.sessionEnd('SUCCESS', 2);
    w.close();

    const [file] = eventFiles(dir);
    expect(file).toMatch(/events\.out\.tfevents\.1700000000\./);
    const events = readEvents(file!);
    expect(events[0]).toMatchObject({ file_version: 'brain.Event:2', step: 0 });
    expect(events[0]!.wall_time).toBe(1_700_000_000.5);
    // float64 end to end: the exact double comes back.
    expect(scalarsOf(events)).toEqual(
      new Map([
        ['loss@1', Math.LN2],
        ['rg/zh@1', -0.125],
        ['loss@2', 0.5],
      ]),
    );
    const scalar = events[2]!.summary!.value[0]!;
    expect(scalar.metadata?.plugin_data?.plugin_name).toBe('scalars');
    expect(scalar.metadata?.data_class).toBe(1); // DATA_CLASS_SCALAR
    expect(scalar.tensor?.dtype).toBe(2); // DT_DOUBLE
    const hp = hparamsOf(events);
    expect(hp.get('_hparams_/session_start_info')?.session_start_info).toEqual({
      hparams: {
        method: { string_value: 'mpo' },
        beta: { number_value: 0.1 },
        'training.steps': { number_value: 12 },
        bf16: { bool_value: true },
      },
      group_name: 'run-1',
      start_time_secs: 1_700_000_000.5,
    });
    expect(hp.get('_hparams_/session_end_info')?.session_end_info).toMatchObject({ status: 1 }); // SUCCESS
  });

  it('is caught by the reader when a byte changes (the CRCs are real)', () => {
    const dir = tmp();
    const w = new EventWriter(dir);
    w.scalars(3, { loss: 1.5 });
    w.close();
    const file = eventFiles(dir)[0]!;
    const good = readFileSync(file);
    expect(readRecords(good)).toHaveLength(2);
    for (const at of [good.length - 10, 2, 20]) {
      const bad = Buffer.from(good);
      bad[at]! ^= 0x01;
      expect(() => readRecords(bad), `byte ${at}`).toThrow(CrcError);
    }
  });

  it('buffers until flushBytes and writes whole records', () => {
    const dir = tmp();
    const w = new EventWriter(dir, { flushBytes: 1 << 20, flushMs: 60_000 });
    for (let step = 1; step <= 10; step++) w.scalars(step, { loss: 1 / step });
    const file = eventFiles(dir)[0]!;
    expect(readEvents(file)).toHaveLength(1); // only the version so far
    w.flush();
    expect(scalarsOf(readEvents(file)).get('loss@10')).toBe(0.1);
  });

  it('flattens nested hyperparameters and keeps arrays as JSON', () => {
    expect(
      flattenHParams({ a: 1, training: { lr: 1e-6, sched: 'cosine' }, langs: ['en', 'zh'], n: null }),
    ).toEqual({
      a: 1,
      'training.lr': 1e-6,
      'training.sched': 'cosine',
      langs: '["en","zh"]',
    });
  });
});

describe('TrialEvents', () => {
  it('tags per-language rows name/lang, marks a resume with SessionLog START, and maps trial statuses', () => {
    const trial = tmp();
    const log = createLogger('silent');
    const first = new TrialEvents(trial, log);
    first.hparams({ method: 'dpo', training: { steps: 4 } }, 'run');
    first.started(null);
    first.rows([
      { step: 1, name: 'loss', language: null, value: 0.7 },
      { step: 1, name: 'heldout/reward_gap', language: 'zh', value: 0.01 },
    ]);
    first.close();
    const second = new TrialEvents(trial, log, 'resume');
    second.started(1);
    second.rows([{ step: 2, name: 'loss', language: null, value: 0.6 }]);
    second.end('STOPPED', 2);
    second.close();

    const files = eventFiles(join(trial, 'tensorboard'));
    expect(files).toHaveLength(2);
    const events = files.flatMap(readEvents);
    expect(scalarsOf(events)).toEqual(
      new Map([
        ['loss@1', 0.7],
        ['heldout/reward_gap/zh@1', 0.01],
        ['loss@2', 0.6],
      ]),
    );
    // The start, then the resume from the checkpoint of step 1: steps from 2 on are trained again.
    expect(events.filter((e) => e.session_log)).toMatchObject([
      { step: 0, session_log: { status: 'START' } },
      { step: 2, session_log: { status: 'START' } },
    ]);
    // ASHA's stop is a normal end of a trial: SUCCESS (1).
    expect(hparamsOf(events).get('_hparams_/session_end_info')?.session_end_info?.status).toBe(1);
  });

  it('logs and gives up when the directory cannot be written, without throwing', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'tensorboard'), 'a file where the folder should be');
    const warnings: string[] = [];
    const log = createLogger('warn');
    log.warn = ((_o: unknown, msg: string) => warnings.push(msg)) as typeof log.warn;
    const events = new TrialEvents(dir, log);
    events.rows([{ step: 1, name: 'loss', language: null, value: 1 }]);
    events.close();
    expect(warnings).toEqual(['writing the TensorBoard log failed; it stops here']);
  });
});
