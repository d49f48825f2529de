#!/usr/bin/env bash
# Installs dependencies (idempotent), configures DIR (default build/) with the given meson options, builds it.
# Developer and CI builds treat warnings as errors (-Dwerror=true); the project default, for distribution
# builds, does not.
#   tools/build.sh [DIR] [meson options...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
tools/install-deps.sh
if [[ -f $dir/build.ninja ]]; then
  meson setup --reconfigure "$dir" -Dwerror=true "$@" >/dev/null
else
  meson setup "$dir" -Dwerror=true "$@" >/dev/null
fi
ninja -C "$dir"
