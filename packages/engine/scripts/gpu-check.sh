#!/usr/bin/env bash
# Issue 3 item 10, for a machine with an NVIDIA GPU and a CUDA build of PyTorch 2.x: build the addon
# against the torch wheel's libtorch, run the golden/dtype tests (the CUDA test compares cuda:0 with
# the CPU in float32) and the config-S benchmark on cuda:0 in bfloat16 and float32.
#   bash packages/engine/scripts/gpu-check.sh      (from the repo root, after npm ci)
# Prints JSON lines; nothing here runs on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
export LIBTORCH="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
export MPO_BUILD_JOBS="${MPO_BUILD_JOBS:-8}"
node scripts/build-addon.mjs
npx tsc -p tsconfig.json
node -e 'import("./dist/index.js").then(m => console.log(JSON.stringify(m.engineInfo())))'
npx vitest run test/golden.test.ts test/dtype.test.ts
for dtype in bfloat16 float32; do
  node dist/bench-cli.js --device cuda:0 --dtype "$dtype" --pairs 8 --steps 10 --json
done
