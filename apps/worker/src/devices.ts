// Device slots: what an agent can run at once. One slot is one GPU, or one CPU
// core; a job of K ranks needs K slots of its device on one agent (one per
// rank), and its ranks are pinned to exactly those cores / GPUs.
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { getAffinity, parseCoreList } from '@mpo/allreduce';
import type { AgentSlots, Device, SlotRequirement } from '@mpo/queue';

/** One device kind of an agent: `ids[i]` is slot i's core number or GPU index. */
export interface DeviceSlots {
  device: Device;
  ids: number[];
}

/** GPU indices from `nvidia-smi --query-gpu=index --format=csv,noheader`; none when it is missing or fails. */
export function detectGpus(nvidiaSmi = 'nvidia-smi'): number[] {
  try {
    const out = execFileSync(nvidiaSmi, ['--query-gpu=index', '--format=csv,noheader'], {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => /^\d+$/.test(l))
      .map(Number);
  } catch {
    return [];
  }
}

/** The cores CPU slots map to: MPO_CPU_CORES, else this process's affinity mask. */
export function cpuCores(list?: string): number[] {
  if (list) return parseCoreList(list);
  try {
    return getAffinity();
  } catch {
    return Array.from({ length: availableParallelism() }, (_, i) => i);
  }
}

/**
 * Parses MPO_DEVICES: comma-separated `cpu` (every core), `cpu:N` (N slots on
 * the first N cores), `gpu:N` (GPUs 0..N-1) and `cuda:I` (GPU I).
 * "cpu:2" → 2 CPU slots; "cuda:0,cuda:1" → 2 GPU slots; "cpu:4,gpu:1".
 */
export function parseDevices(spec: string, cores: number[]): DeviceSlots[] {
  const cpu: number[] = [];
  const gpu: number[] = [];
  for (const raw of spec.split(',')) {
    const item = raw.trim();
    if (!item) continue;
    const [kind, arg] = item.split(':', 2) as [string, string | undefined];
    const n = arg !== undefined && /^\d+$/.test(arg) ? Number(arg) : Number.NaN;
    if (item === 'cpu') cpu.push(...cores);
    else if (kind === 'cpu' && n >= 1) {
      // More slots than cores oversubscribes them (slot i runs on core i mod cores).
      for (let i = 0; i < n; i++) cpu.push(cores[i % cores.length]!);
    } else if (kind === 'gpu' && n >= 1) {
      for (let i = 0; i < n; i++) gpu.push(i);
    } else if (kind === 'cuda' && n >= 0) gpu.push(n);
    else throw new Error(`MPO_DEVICES: cannot read "${item}" (expected cpu, cpu:N, gpu:N or cuda:I)`);
  }
  const out: DeviceSlots[] = [];
  if (cpu.length) out.push({ device: 'cpu', ids: cpu });
  if (gpu.length) out.push({ device: 'gpu', ids: [...new Set(gpu)] });
  if (out.length === 0) throw new Error(`MPO_DEVICES: "${spec}" names no device`);
  return out;
}

/** MPO_DEVICES when set; else the GPUs nvidia-smi lists; else one CPU slot per core. */
export function detectDevices(opts: {
  devices?: string;
  cpuCores?: string;
  nvidiaSmi?: string;
}): DeviceSlots[] {
  const cores = cpuCores(opts.cpuCores);
  if (opts.devices) return parseDevices(opts.devices, cores);
  const gpus = detectGpus(opts.nvidiaSmi);
  if (gpus.length) return [{ device: 'gpu', ids: gpus }];
  return [{ device: 'cpu', ids: cores }];
}

/** The slots one running job holds: indices into its device's slots, and the cores / GPUs they are. */
export interface SlotLease {
  device: Device;
  slots: number[];
  ids: number[];
}

/**
 * Free/busy bookkeeping of an agent's slots. Synchronous, so checking and
 * taking slots cannot interleave with another job's release.
 */
export class SlotPool {
  private readonly busy = new Map<Device, boolean[]>();
  private waiters: (() => void)[] = [];

  constructor(readonly devices: readonly DeviceSlots[]) {
    for (const d of devices)
      this.busy.set(
        d.device,
        d.ids.map(() => false),
      );
  }

  total(device: Device): number {
    return this.busy.get(device)?.length ?? 0;
  }

  free(device: Device): number {
    return this.busy.get(device)?.filter((b) => !b).length ?? 0;
  }

  /** Takes `req.count` free slots of `req.device`, or returns null (nothing taken) when too few are free. */
  tryAcquire(req: SlotRequirement): SlotLease | null {
    const busy = this.busy.get(req.device);
    const dev = this.devices.find((d) => d.device === req.device);
    if (!busy || !dev) return null;
    const free = busy.flatMap((b, i) => (b ? [] : [i]));
    if (free.length < req.count) return null;
    const slots = free.slice(0, req.count);
    for (const i of slots) busy[i] = true;
    return { device: req.device, slots, ids: slots.map((i) => dev.ids[i]!) };
  }

  release(lease: SlotLease): void {
    const busy = this.busy.get(lease.device);
    if (!busy) return;
    for (const i of lease.slots) busy[i] = false;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves once `device` has a free slot (at once when it has one), or when `signal` aborts. */
  async waitFree(device: Device, signal?: AbortSignal): Promise<void> {
    while (this.free(device) < 1 && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener('abort', done);
          resolve();
        };
        this.waiters.push(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** What the heartbeat advertises. */
  snapshot(): AgentSlots[] {
    return this.devices.map((d) => ({
      device: d.device,
      total: d.ids.length,
      free: this.free(d.device),
      ids: d.ids.map(String),
    }));
  }
}
