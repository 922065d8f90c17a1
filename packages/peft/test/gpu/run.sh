#!/bin/bash
# The @dorajs/peft device check on a WebGPU machine.
#   bash packages/peft/test/gpu/run.sh prepare   # here: bundle to tmp/peft-gpu/peft-webgpu.mjs (needs .gpu/ from benchmarks/h200/prepare.sh)
#   bash packages/peft/test/gpu/run.sh run       # there, from the repo root: source .gpu/unpack.sh first
set -euo pipefail
root=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
cd "$root"
case ${1:-} in
  prepare)
    mkdir -p tmp/peft-gpu
    backends/webgpu/node_modules/.bin/esbuild packages/peft/test/gpu/peft-webgpu.ts --bundle --platform=node --format=esm --target=node20 \
      --conditions=@dorajs/source --external:webgpu --outfile=tmp/peft-gpu/peft-webgpu.mjs --log-level=warning
    du -h tmp/peft-gpu/peft-webgpu.mjs ;;
  run)
    # Dawn resolves from the bundle's own node_modules (ESM ignores NODE_PATH).
    mkdir -p tmp/peft-gpu/node_modules && cp -r .gpu/node_modules/webgpu tmp/peft-gpu/node_modules/
    export EGL_PLATFORM=${EGL_PLATFORM:-surfaceless}
    timeout 300 node tmp/peft-gpu/peft-webgpu.mjs ;;
  *) sed -n '2,4p' "$0" ;;
esac
