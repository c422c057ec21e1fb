#!/usr/bin/env bash
# The prepared GPU check (issue 15 item 4), for a machine with an NVIDIA GPU, PyTorch 2.x (CUDA),
# CMake and a C++ compiler, and neither Node nor a package registry: only this repository arrives.
#
#   scripts/gpu-check.sh [--dry-run] [--out FILE] [--device cuda:N]
#
# Why a C++ harness and not a carried Node binary: the engine's numerics live in packages/engine/csrc,
# and the N-API layer (addon.cpp) only copies arguments in and out. Linking csrc/ into a small program
# (packages/engine/harness, CMake) needs nothing beyond the torch wheel; running the addon would need
# Node (~45 MB compressed for one platform, most of the 64 MiB allowance), node-addon-api headers,
# node-gyp and a built dist/, none of which the GPU machine has.
#
# Steps (all in one run, sized for <= 8 minutes on one GPU; the build is ~1-2 min of it):
#   1. build mpo-engine-check against the wheel's libtorch (LIBTORCH=<torch dir>, as binding.gyp does);
#   2. golden fixture on the GPU in fp32 (1e-4), one MPO step on CPU vs GPU (fp32 1e-4; bf16 tolerances in
#      harness/driver.py), a short bf16 MPO run whose loss must fall, config-M step tokens/s for the
#      engine and the same step in PyTorch (harness/torch_step.py), bf16 and fp32;
#   3. a JSON summary (--out, default gpu-check.json); exit status 1 when a check fails.
# --dry-run: the same steps on the CPU, at a small size, built against this Python's torch when it
# ships headers (a pip wheel) or else Debian's libtorch-dev; the PyTorch side is skipped with a message
# when no Python here has torch. packages/engine/test/gpu-check.test.ts runs it.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dry=0
out="$root/gpu-check.json"
device="cuda:0"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --out) out="$2"; shift ;;
    --device) device="$2"; shift ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
say() { echo "[gpu-check] $*" >&2; }

# A Python with torch: $MPO_PYTHON, python3, or Debian's /usr/bin/python3 (python3-torch).
python=""
for p in ${MPO_PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' 2>/dev/null; then python="$p"; break; fi
done
if [ -z "$python" ]; then
  [ "$dry" = 1 ] || { say "no Python with torch found (set MPO_PYTHON)"; exit 1; }
  python=python3
  say "no Python with torch here: the PyTorch side of the benchmark will be skipped"
fi

build="${MPO_CHECK_BUILD:-$root/build/gpu-check}"
mkdir -p "$build"
libtorch=""
abi=""
if "$python" -c 'import torch' 2>/dev/null; then
  tdir="$("$python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
  abi="$("$python" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')"
  [ -f "$tdir/include/torch/csrc/api/include/torch/version.h" ] && libtorch="$tdir"
fi
if [ "$dry" = 0 ]; then
  [ -n "$libtorch" ] || { say "the torch at $python has no include/: need a PyTorch wheel"; exit 1; }
  "$python" -c 'import torch; assert torch.cuda.is_available(), "torch sees no CUDA device"; print("[gpu-check] torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))' >&2
elif [ -z "$libtorch" ]; then
  # Debian's libtorch-dev: headers in /usr/include, libraries in the multiarch dir; a folder of two
  # links gives it the include/ + lib/ shape the build takes, so the dry run builds the same way.
  [ -f /usr/include/torch/csrc/api/include/torch/version.h ] || { say "no libtorch: apt-get install libtorch-dev"; exit 1; }
  libtorch="$build/debian-libtorch"
  mkdir -p "$libtorch"
  ln -sfn /usr/include "$libtorch/include"
  ln -sfn "/usr/lib/$(gcc -print-multiarch)" "$libtorch/lib"
  abi=1
fi

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
jobs="${MPO_BUILD_JOBS:-$(nproc)}"
t0=$(date +%s)
cmake -S "$root/packages/engine/harness" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DLIBTORCH="$libtorch" -DTORCH_CXX11_ABI="$abi" >"$build/configure.log" \
  || { cat "$build/configure.log" >&2; exit 1; }
grep 'mpo-engine-check: libtorch' "$build/configure.log" >&2 || true
nice -n 10 cmake --build "$build" -j "$jobs" >"$build/build.log" 2>&1 || { tail -40 "$build/build.log" >&2; exit 1; }
build_s=$(( $(date +%s) - t0 ))
say "harness built in ${build_s} s"

# The c10d rank (packages/allreduce/harness: gloo between processes; NCCL on the GPU with a CUDA
# libtorch). Optional: a libtorch without gloo's headers (or NCCL's, for ProcessGroupNCCL.hpp) cannot
# build it, and the summary then says so instead of the engine checks failing with it.
c10d_build="$build/c10d"
pip_inc() { "$python" -c "import nvidia.$1 as m, os; print(os.path.join(list(m.__path__)[0], 'include'))" 2>/dev/null || true; }
nccl_inc="$(pip_inc nccl)"
cuda_inc="$(pip_inc cuda_runtime)"
c10d_args=()
if cmake -S "$root/packages/allreduce/harness" -B "$c10d_build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
     -DLIBTORCH="$libtorch" -DTORCH_CXX11_ABI="$abi" -DNCCL_INCLUDE="$nccl_inc" -DCUDA_INCLUDE="$cuda_inc" >"$build/c10d-configure.log" 2>&1 \
   && nice -n 10 cmake --build "$c10d_build" -j "$jobs" >"$build/c10d-build.log" 2>&1; then
  c10d_args=(--c10d-bin "$c10d_build/mpo-c10d-check")
else
  say "c10d harness did not build (see $build/c10d-build.log); its checks are reported as not built"
  c10d_args=(--c10d-unbuilt "$(tail -5 "$build/c10d-build.log" "$build/c10d-configure.log" 2>/dev/null | tr '\n"\\' '   ' | cut -c1-600)")
fi

args=(--bin "$build/mpo-engine-check" --fixture "$root/packages/engine/test/fixtures/golden-llama"
      --device "$device" --out "$out" --build "{\"libtorch\":\"$libtorch\",\"seconds\":$build_s}")
args+=("${c10d_args[@]}")
[ "$dry" = 1 ] && args+=(--dry-run)
exec "$python" "$root/packages/engine/harness/driver.py" "${args[@]}"
