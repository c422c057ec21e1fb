// GPU slots only where the engine can use them (src/gpu-gate.ts, issue 15 item 1). The engine built
// here is Debian's CPU libtorch 1.13, so the real probe must say "no CUDA", and an agent on a machine
// whose nvidia-smi lists GPUs (a fake one on PATH) must offer CPU slots instead, saying why.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readAgents } from '@mpo/queue';
import { afterAll, describe, expect, it } from 'vitest';
import { gateGpuSlots, probeEngineCuda } from '../src/gpu-gate.js';
import {
  type AgentHandle,
  agentEnv,
  deleteKeys,
  newRedis,
  scratch,
  startAgent,
  waitUntil,
} from './helpers.js';

function recorder() {
  const lines: { level: 'info' | 'warn'; obj: object; msg: string }[] = [];
  return {
    lines,
    info: (obj: object, msg: string) => lines.push({ level: 'info', obj, msg }),
    warn: (obj: object, msg: string) => lines.push({ level: 'warn', obj, msg }),
  };
}

const detected = [
  { device: 'cpu' as const, ids: [0, 1] },
  { device: 'gpu' as const, ids: [0, 1, 2] },
];

describe('GPU slots gated on the engine', () => {
  it('asks the real engine: this build has no CUDA and sees no device', () => {
    const info = probeEngineCuda();
    expect(info.ok).toBe(true);
    if (!info.ok) return;
    expect(info.cudaBuild).toBe(false);
    expect(info.cudaDevices).toBe(0);
    expect(info.torchVersion).toMatch(/^\d+\.\d+/);
  });

  it('drops every GPU slot of a CPU-only engine, with a log line that says so', () => {
    const log = recorder();
    const out = gateGpuSlots(
      detected,
      { ok: true, torchVersion: '1.13.0', cudaBuild: false, cudaDevices: 0 },
      log,
      {
        explicit: false,
        cpuFallback: [0, 1],
      },
    );
    expect(out).toEqual([{ device: 'cpu', ids: [0, 1] }]);
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]!.level).toBe('warn');
    expect(log.lines[0]!.msg).toMatch(/no GPU slots.*CPU-only libtorch/);
  });

  it('keeps only the GPUs a CUDA engine sees', () => {
    const log = recorder();
    const out = gateGpuSlots(
      detected,
      { ok: true, torchVersion: '2.5.1', cudaBuild: true, cudaDevices: 2 },
      log,
      {
        explicit: false,
        cpuFallback: [0, 1],
      },
    );
    expect(out).toEqual([
      { device: 'cpu', ids: [0, 1] },
      { device: 'gpu', ids: [0, 1] },
    ]);
    expect(log.lines.map((l) => l.level)).toEqual(['warn', 'info']);
    expect(log.lines[0]!.obj).toEqual({ gpus: [2], cudaDevices: 2 });
  });

  it('falls back to CPU cores when only GPUs were detected, and refuses an explicit GPU-only list', () => {
    const gpuOnly = [{ device: 'gpu' as const, ids: [0] }];
    const noEngine = { ok: false as const, error: 'addon missing' };
    expect(gateGpuSlots(gpuOnly, noEngine, recorder(), { explicit: false, cpuFallback: [3] })).toEqual([
      { device: 'cpu', ids: [3] },
    ]);
    expect(() => gateGpuSlots(gpuOnly, noEngine, recorder(), { explicit: true, cpuFallback: [3] })).toThrow(
      /MPO_DEVICES names only GPUs/,
    );
  });

  describe('an agent whose nvidia-smi lists GPUs', () => {
    const s = scratch('gpugate');
    const redis = newRedis();
    let agent: AgentHandle | undefined;
    afterAll(async () => {
      await agent?.dispose();
      await deleteKeys(redis, s.prefix);
      redis.disconnect();
    });

    it('offers CPU slots, not GPU slots, with the CPU-only engine', async () => {
      // A fake nvidia-smi listing two GPUs, first on PATH; MPO_DEVICES unset so the agent detects.
      writeFileSync(join(s.dir, 'nvidia-smi'), '#!/bin/sh\nprintf "0\\n1\\n"\n');
      chmodSync(join(s.dir, 'nvidia-smi'), 0o755);
      // MPO_DEVICES empty: the agent detects its devices (nvidia-smi first).
      agent = startAgent(
        agentEnv(s, { PATH: `${s.dir}:${process.env.PATH}`, MPO_CPU_CORES: '0', MPO_DEVICES: '' }),
      );
      const why = await agent.waitForLog(
        (l) => /offering no GPU slots/.test(String(l.msg)),
        60_000,
        'the gate',
      );
      expect(why.msg).toMatch(/CPU-only libtorch/);
      expect(why.gpus).toEqual([0, 1]);
      const [hb] = await waitUntil(async () => {
        const a = await readAgents(redis, s.prefix);
        return a.length ? a : null;
      }, 'a heartbeat');
      expect(hb!.slots).toEqual([{ device: 'cpu', total: 1, free: 1, ids: ['0'] }]);
      expect(hb!.queues).toEqual(['train-cpu', 'eval-cpu', 'sweep']);
    });
  });
});
