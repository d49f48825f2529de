#!/usr/bin/env bash
# Installs dependencies (idempotent), configures DIR (default build/) with the given meson options, builds it.
#   tools/build.sh [DIR] [meson options...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
tools/install-deps.sh
if [[ -f $dir/build.ninja ]]; then
  meson setup --reconfigure "$dir" "$@" >/dev/null
else
  meson setup "$dir" "$@" >/dev/null
fi
ninja -C "$dir"
