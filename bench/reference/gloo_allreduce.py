#!/usr/bin/python3
"""Reference for bench/allreduce-compare.mjs: torch.distributed all-reduce (sum, float32) over the
gloo backend on loopback TCP, one process per rank on this machine, the same message sizes as
@mpo/allreduce's benchmark. Times are per call, after one warm-up call, between barriers.

usage: /usr/bin/python3 gloo_allreduce.py [--ranks 2] [--port 29533]
prints per size: "gloo ranks=N bytes=B time_ms=T algbw_GBps=A busbw_GBps=W"
(busbw = algbw * 2(n-1)/n, the ring all-reduce's bytes per link, as nccl-tests reports it).
Needs PyTorch (Debian: apt-get install python3-torch); exits 3 with a message when it is missing.
"""
import argparse
import os
import sys
import time

try:
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
except ImportError:
    print("gloo_allreduce.py: PyTorch is not installed for this python (Debian: apt-get install python3-torch)",
          file=sys.stderr)
    sys.exit(3)

SIZES = [4 << 10, 256 << 10, 4 << 20, 64 << 20]


def rank_main(rank, world, port, results):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    for nbytes in SIZES:
        buf = torch.full((nbytes // 4,), float(rank + 1))
        calls = max(3, min(50, (64 << 20) // nbytes))
        dist.all_reduce(buf)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(calls):
            dist.all_reduce(buf)
        dist.barrier()
        if rank == 0:
            results.put((nbytes, (time.perf_counter() - t0) / calls))
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--port", type=int, default=29533)
    a = ap.parse_args()
    results = mp.get_context("spawn").Queue()
    mp.spawn(rank_main, args=(a.ranks, a.port, results), nprocs=a.ranks)
    for _ in SIZES:
        nbytes, sec = results.get()
        algbw = nbytes / sec / 1e9
        busbw = algbw * 2 * (a.ranks - 1) / a.ranks
        print(f"gloo ranks={a.ranks} bytes={nbytes} time_ms={sec * 1e3:.3f} "
              f"algbw_GBps={algbw:.2f} busbw_GBps={busbw:.2f}")


if __name__ == "__main__":
    main()
