import { describe, expect, it } from 'vitest';
import { cudaTestHelpers, NcclCommunicator, ncclAvailable } from '../src/index.js';

// Built only where nccl.h, libnccl and the CUDA runtime were found; runs only with a GPU.
const gpus = ncclAvailable() ? cudaTestHelpers.deviceCount() : 0;

describe.skipIf(gpus === 0)('NCCL communicator (single rank smoke test)', () => {
  it('all-reduces a device buffer and a host buffer', async () => {
    const comm = await NcclCommunicator.create({ device: 0 });
    expect(comm.worldSize).toBe(1);
    const host = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5);
    const dev = cudaTestHelpers.alloc(0, host.length);
    try {
      cudaTestHelpers.upload(dev, host);
      await comm.allReduce(dev, 'sum');
      await comm.allReduce(dev, 'avg');
      const back = new Float32Array(host.length);
      cudaTestHelpers.download(dev, back);
      expect(back).toEqual(host);
      const h2 = host.slice();
      await comm.allReduce(h2, 'sum');
      expect(h2).toEqual(host);
      await comm.barrier();
    } finally {
      cudaTestHelpers.free(dev);
      await comm.close();
    }
  });
});

describe('NCCL availability', () => {
  it('reports whether the addon was built with NCCL', () => {
    expect(typeof ncclAvailable()).toBe('boolean');
    if (!ncclAvailable()) {
      return expect(NcclCommunicator.create()).rejects.toThrow(/built without NCCL/);
    }
  });
});
