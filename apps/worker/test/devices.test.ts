// devices.ts: MPO_DEVICES, GPU detection and the slot pool.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { detectDevices, detectGpus, parseDevices, SlotPool } from '../src/devices.js';
import { scratch } from './helpers.js';

describe('device slots', () => {
  it('reads MPO_DEVICES', () => {
    expect(parseDevices('cpu:2', [4, 5, 6])).toEqual([{ device: 'cpu', ids: [4, 5] }]);
    expect(parseDevices('cuda:0,cuda:1', [0])).toEqual([{ device: 'gpu', ids: [0, 1] }]);
    expect(parseDevices('cpu:3,gpu:2', [0, 1])).toEqual([
      { device: 'cpu', ids: [0, 1, 0] },
      { device: 'gpu', ids: [0, 1] },
    ]);
    expect(parseDevices('cpu', [2, 3])).toEqual([{ device: 'cpu', ids: [2, 3] }]);
    expect(() => parseDevices('tpu:4', [0])).toThrow(/cannot read "tpu:4"/);
    expect(() => parseDevices('cpu:0', [0])).toThrow(/cannot read/);
  });

  it('finds GPUs with nvidia-smi, and falls back to CPU cores without it', () => {
    const s = scratch('smi');
    const smi = join(s.dir, 'nvidia-smi');
    writeFileSync(smi, '#!/bin/sh\n[ "$1" = "--query-gpu=index" ] && printf "0\\n1\\n3\\n"\n');
    chmodSync(smi, 0o755);
    expect(detectGpus(smi)).toEqual([0, 1, 3]);
    expect(detectDevices({ nvidiaSmi: smi })).toEqual([{ device: 'gpu', ids: [0, 1, 3] }]);
    expect(detectGpus(join(s.dir, 'missing'))).toEqual([]);
    expect(detectDevices({ nvidiaSmi: join(s.dir, 'missing'), cpuCores: '0-1' })).toEqual([
      { device: 'cpu', ids: [0, 1] },
    ]);
    // MPO_DEVICES wins over detection.
    expect(detectDevices({ devices: 'cpu:1', cpuCores: '1', nvidiaSmi: smi })).toEqual([
      { device: 'cpu', ids: [1] },
    ]);
  });

  it('hands out free slots and wakes waiters on release', async () => {
    const pool = new SlotPool([{ device: 'cpu', ids: [0, 1, 2] }]);
    const a = pool.tryAcquire({ device: 'cpu', count: 2 });
    expect(a).toEqual({ device: 'cpu', slots: [0, 1], ids: [0, 1] });
    expect(pool.tryAcquire({ device: 'cpu', count: 2 })).toBeNull();
    expect(pool.tryAcquire({ device: 'gpu', count: 1 })).toBeNull();
    const b = pool.tryAcquire({ device: 'cpu', count: 1 })!;
    expect(pool.free('cpu')).toBe(0);
    let woke = false;
    const waiting = pool.waitFree('cpu').then(() => {
      woke = true;
    });
    await sleep(10);
    expect(woke).toBe(false);
    pool.release(b);
    await waiting;
    expect(pool.snapshot()).toEqual([{ device: 'cpu', total: 3, free: 1, ids: ['0', '1', '2'] }]);
    pool.release(a!);
    expect(pool.free('cpu')).toBe(3);
  });

  it('stops waiting when aborted', async () => {
    const pool = new SlotPool([{ device: 'cpu', ids: [0] }]);
    pool.tryAcquire({ device: 'cpu', count: 1 });
    const ac = new AbortController();
    const w = pool.waitFree('cpu', ac.signal);
    ac.abort();
    await w;
  });
});
