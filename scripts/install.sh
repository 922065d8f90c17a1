#!/usr/bin/env bash
# Installs everything dorajs needs on a fresh Debian with Node 20 and npm, then builds the workspace.
# Idempotent: steps already done are skipped. Run as root (or with sudo available).
#   - Debian packages: Mesa EGL/GLES (WebGPU through Dawn without a GPU) and Chromium (browser tests).
#   - pnpm at the version pinned in package.json, the locked dependencies, and `pnpm build`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(libegl1 libegl-mesa0 libgles2 libgl1-mesa-dri chromium)
PNPM_VERSION=12.4.2

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

missing=()
for package in "${APT_PACKAGES[@]}"; do
  is_installed "$package" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -q
  # No recommends: they pull in desktop pieces (notification daemon, printing) that headless use never needs.
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install.sh: Debian packages already installed"
fi

if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  echo "install.sh: npm install -g pnpm@$PNPM_VERSION"
  as_root npm install -g --no-fund --no-audit "pnpm@$PNPM_VERSION"
  hash -r
fi

# pnpm would otherwise ask before replacing a node_modules made by another pnpm version.
export CI="${CI:-true}"
pnpm install --frozen-lockfile
pnpm build
