#!/bin/bash
# The H200 comparison: PyTorch (torch_reference.py) and dorajs WebGPU in one run, JSON out.
#
#   bash benchmarks/h200/run.sh prepare          # here: pack .gpu/ (Node, Dawn, Vulkan loader) and bundle .gpu/bench.mjs
#   bash benchmarks/h200/run.sh run [--small]    # there (after `source .gpu/unpack.sh;`): writes $OUT (default tmp/h200)
#   bash benchmarks/h200/run.sh local            # prepare + run --small here on llvmpipe (the end-to-end check)
#   node benchmarks/h200/import.mjs DIR [SUITE]  # here: record a run's JSON in results/latest.json + docs/benchmarks.md
#
# PyTorch runs first (its measured copy bandwidth sets our read-once floor); each WebGPU section runs in its
# own process and writes its own file, so one failure loses one section only. Then summary.json.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
mode=${1:-help}
shift || true

prepare() {
  set -e
  bash "$here/prepare.sh"
  local esbuild=$root/backends/webgpu/node_modules/.bin/esbuild
  "$esbuild" "$here/bench-entry.ts" --bundle --platform=node --format=esm --target=node20 \
    --conditions=@dorajs/source --external:webgpu --outfile=.gpu/bench.mjs --log-level=warning
  echo "bundled .gpu/bench.mjs ($(du -h .gpu/bench.mjs | cut -f1))"
  set +e
}

run() {
  local small=''
  [[ ${1:-} == --small ]] && small=--small
  local out=${OUT:-$root/tmp/h200}
  mkdir -p "$out"
  export EGL_PLATFORM=${EGL_PLATFORM:-surfaceless}
  # unpack.sh decompresses Dawn on the GPU machine; a local run does it here.
  local dawn=.gpu/node_modules/webgpu/dist/linux-x64/dawn.node
  [[ -f $dawn ]] || xz -dkc "$dawn.xz" > "$dawn"
  if python3 -c 'import torch, peft; assert torch.cuda.is_available()' 2>/dev/null; then
    echo "== torch_reference.py"
    timeout 100 python3 "$here/torch_reference.py" "$out/torch.json" --skip-model --quick > /tmp/torch.log 2>&1 || echo "torch_reference.py failed"
    tail -n 30 /tmp/torch.log
  else
    echo "== torch_reference.py skipped: no PyTorch with CUDA here"
  fi
  # Per-section limits keep the whole run within a 6-minute device slot; rows are saved as they are measured.
  # (llvmpipe at --small sizes is slower than that, so it gets three times as long.)
  declare -A limit=([matmul]=80 [weightnorm]=60 [dispatch]=30 [dora]=60)
  local scale=1
  [[ -n $small ]] && scale=3
  for section in matmul weightnorm dispatch dora; do
    echo "== webgpu $section ($(date +%T))"
    # stderr stays out of $OUT (few files come back); Dawn's warnings are noise unless the section fails.
    timeout $((limit[$section] * scale)) node .gpu/bench.mjs "$section" "$out/webgpu-$section.json" $small --torch "$out/torch.json" 2> /tmp/webgpu-$section.err
    local rc=$?
    [[ $rc -ne 0 ]] && { echo "section $section exited $rc"; tail -n 20 /tmp/webgpu-$section.err; }
  done
  echo "== summary"
  node .gpu/bench.mjs summary "$out"
}

case $mode in
  prepare) prepare ;;
  run) run "$@" ;;
  local) prepare && run --small ;;
  *) sed -n '2,10p' "$0" ;;
esac
