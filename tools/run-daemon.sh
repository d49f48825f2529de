#!/usr/bin/env bash
# README command 1: installs dependencies, builds, and runs tpmrmd's embedded default with a client call.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh build
exec tools/demo.sh build
