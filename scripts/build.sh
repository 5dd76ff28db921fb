#!/usr/bin/env bash
# Configures and builds into build/ (Release; CUDA backend when nvcc is present).
# Extra CMake arguments pass through, e.g. scripts/build.sh -DITKIT_CUDA=OFF.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ITKIT_BUILD_DIR:-$repo/build}"
jobs="${ITKIT_JOBS:-$(nproc)}"
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" -j "$jobs"
