// Single-thread memcpy bandwidth, measured by the all-reduce benchmark in the same run (issue 15
// item 6): the all-reduce's busbw is only meaningful beside what one core can copy on this machine
// at that moment, because the machine is shared and its memory bandwidth varies with the load.
// `TypedArray.prototype.set` between two arrays of the same type is a plain memmove in V8.

/** Median over `trials` of bytes / time for copying `bytes` bytes from one buffer to another, GB/s (1e9). */
export function memcpyGBps(bytes: number, trials: number, iters: number): number {
  const src = new Uint8Array(bytes).fill(1);
  const dst = new Uint8Array(bytes);
  dst.set(src); // fault the pages in before timing
  const rates: number[] = [];
  for (let t = 0; t < trials; t++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) dst.set(src);
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    rates.push((bytes * iters) / sec / 1e9);
  }
  rates.sort((a, b) => a - b);
  return rates[rates.length >> 1] as number;
}
