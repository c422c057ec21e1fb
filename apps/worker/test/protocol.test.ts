// protocol.ts: the trainer's protocol files, followed as they grow and replayed on resume.
import { appendFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ParsedLine } from '@mpo/queue';
import { describe, expect, it } from 'vitest';
import { newProtocolFile, ProtocolFollower, replayProtocol } from '../src/protocol.js';
import { scratch } from './helpers.js';

describe('protocol files', () => {
  it('follows a growing file line by line, across partial writes', async () => {
    const s = scratch('follow');
    const file = newProtocolFile(s.dir, 'agent/1');
    const seen: ParsedLine[] = [];
    const f = new ProtocolFollower(file, (p) => seen.push(p), 10);
    f.start();
    appendFileSync(file, '{"type":"start","totalSteps":3,"resumedFrom":null}\n{"type":"step","st');
    await sleep(50);
    expect(seen).toHaveLength(1);
    appendFileSync(file, 'ep":1,"totalSteps":3,"loss":0.5,"metrics":{}}\ngarbage\n{"type":"done","step":1,');
    appendFileSync(file, '"totalSteps":3,"stopped":true,"checkpoint":null}');
    await f.stop();
    expect(seen.map((p) => (p.ok ? p.message.type : 'bad'))).toEqual(['start', 'step', 'bad', 'done']);
  });

  it('replays earlier attempts up to the resumed step', async () => {
    const s = scratch('replay');
    const first = newProtocolFile(s.dir, 'a');
    const lines = [
      { type: 'start', totalSteps: 4, resumedFrom: null },
      { type: 'step', step: 1, totalSteps: 4, loss: 1, metrics: {} },
      { type: 'step', step: 2, totalSteps: 4, loss: 1, metrics: {} },
      { type: 'eval', step: 2, metrics: { x: 1 } },
      { type: 'checkpoint', step: 2, path: '/c/2', bytes: 1, sha256: 'a'.repeat(64) },
      { type: 'step', step: 3, totalSteps: 4, loss: 1, metrics: {} },
    ];
    writeFileSync(first, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n{"type":"st`);
    await sleep(2);
    const current = newProtocolFile(s.dir, 'b');
    appendFileSync(current, `${JSON.stringify(lines[5])}\n`);
    const replayed = await replayProtocol(s.dir, 2, current);
    expect(replayed.map((m) => `${m.type}@${(m as { step: number }).step}`)).toEqual([
      'step@1',
      'step@2',
      'eval@2',
      'checkpoint@2',
    ]);
  });
});
