// GPU slots are offered only when the engine can use them. nvidia-smi (or MPO_DEVICES) says which
// GPUs the machine has; whether a trainer child can run on them depends on the engine it loads: a
// CPU-only libtorch build (Debian's 1.13, the default) throws "device 'cuda:0' requested but the
// engine was built against a CPU-only libtorch" at the first job, and a CUDA build sees only the
// devices CUDA_VISIBLE_DEVICES leaves it. So the agent asks the engine once, at start, in a child
// process (loading libtorch into the agent would cost it ~300 MB for the whole of its life).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { DeviceSlots } from './devices.js';

/** What the engine reports about CUDA (its `engineInfo()`), or why it could not be asked. */
export type EngineCuda =
  | { ok: true; torchVersion: string; cudaBuild: boolean; cudaDevices: number }
  | { ok: false; error: string };

/** Loads @mpo/engine in a child node process and returns its CUDA build flag and visible device count. */
export function probeEngineCuda(timeoutMs = 60_000): EngineCuda {
  // Resolved from this package's folder (where node_modules leads to the workspace's engine).
  const code = `const m = await import('@mpo/engine'); process.stdout.write(JSON.stringify(m.engineInfo()));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  if (r.status !== 0) {
    const why = r.error?.message ?? r.stderr.trim().split('\n').slice(-3).join(' | ');
    return { ok: false, error: `engine probe failed (exit ${r.status}): ${why}` };
  }
  const info = JSON.parse(r.stdout) as { torchVersion: string; cudaBuild: boolean; cudaDevices?: number };
  return {
    ok: true,
    torchVersion: info.torchVersion,
    cudaBuild: info.cudaBuild,
    cudaDevices: info.cudaDevices ?? 0,
  };
}

interface GateLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/**
 * The detected slots minus the GPUs the engine cannot use: all of them on a CPU-only engine build,
 * those with index >= the engine's visible device count otherwise. Each removal is logged with why.
 * When that leaves nothing, the agent falls back to its CPU cores (`cpuFallback`) when the devices
 * were auto-detected; a GPU list the operator set explicitly (MPO_DEVICES) is an error instead.
 */
export function gateGpuSlots(
  detected: DeviceSlots[],
  engine: EngineCuda,
  log: GateLog,
  opts: { explicit: boolean; cpuFallback: number[] },
): DeviceSlots[] {
  const gpu = detected.find((d) => d.device === 'gpu');
  if (!gpu) return detected;
  let usable: number[];
  if (!engine.ok) {
    log.warn({ gpus: gpu.ids, error: engine.error }, 'offering no GPU slots: the engine could not be loaded');
    usable = [];
  } else if (!engine.cudaBuild) {
    log.warn(
      { gpus: gpu.ids, torchVersion: engine.torchVersion },
      'offering no GPU slots: the engine was built against a CPU-only libtorch ' +
        '(rebuild it with LIBTORCH=<CUDA libtorch or torch wheel dir>, or use infra/Dockerfile.gpu)',
    );
    usable = [];
  } else {
    usable = gpu.ids.filter((i) => i < engine.cudaDevices);
    const hidden = gpu.ids.filter((i) => i >= engine.cudaDevices);
    if (hidden.length)
      log.warn(
        { gpus: hidden, cudaDevices: engine.cudaDevices },
        'offering no slots on GPUs the engine cannot see (CUDA_VISIBLE_DEVICES, driver)',
      );
    if (usable.length)
      log.info(
        { gpus: usable, torchVersion: engine.torchVersion },
        'engine is a CUDA build: offering GPU slots',
      );
  }
  const out = detected.filter((d) => d.device !== 'gpu');
  if (usable.length) out.push({ device: 'gpu', ids: usable });
  if (out.length) return out;
  if (opts.explicit)
    throw new Error(
      'MPO_DEVICES names only GPUs, and the engine cannot use any of them (see the log line above)',
    );
  log.warn({ cores: opts.cpuFallback }, 'falling back to CPU slots');
  return [{ device: 'cpu', ids: opts.cpuFallback }];
}
