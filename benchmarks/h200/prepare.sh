#!/bin/bash
# Prepares .gpu/ in the repository root for runs on the H200 benchmark machine (which has no Node.js and no Vulkan
# loader): a compressed Node binary, Dawn's node module (npm `webgpu`) and the Vulkan/EGL loader packages.
# Usage, from the repository root: bash benchmarks/h200/prepare.sh [path-to-webgpu-package] (a copy of the shared GPU recipe)
# Then send .gpu/ along with the working tree and start the command there with: source .gpu/unpack.sh;
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
mkdir -p .gpu/debs .gpu/node_modules/webgpu/dist/linux-x64
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
pkg=${1:-}
if [[ -z $pkg ]]; then
  pkg=$(find "$root" -path '*/node_modules/webgpu/package.json' -not -path '*/.gpu/*' 2>/dev/null | head -n 1 | xargs -r dirname)
fi
[[ -n $pkg && -f $pkg/index.js ]] || { echo "prepare: cannot find the npm package 'webgpu' (install dependencies first, or pass its folder)" >&2; exit 1; }
cp "$pkg/index.js" "$pkg/package.json" .gpu/node_modules/webgpu/
[[ -f .gpu/node_modules/webgpu/dist/linux-x64/dawn.node.xz ]] || xz -T2 -6 -c "$pkg/dist/linux-x64/dawn.node" > .gpu/node_modules/webgpu/dist/linux-x64/dawn.node.xz
[[ -f .gpu/node.xz ]] || xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > .gpu/node.xz
if ! ls .gpu/debs/libvulkan1_*.deb >/dev/null 2>&1; then
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64-lists'
  mkdir -p /tmp/amd64-lists/partial
  apt-get $o update >/dev/null
  (cd .gpu/debs && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1)
fi
cp "$(dirname "$0")/unpack.sh" .gpu/unpack.sh
du -sh .gpu
echo "ready: send .gpu/ with the working tree; begin the command with: source .gpu/unpack.sh;"
