#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (CTest: GoogleTest suites,
# ONNX conformance, model zoo, pipeline and server integration tests).
#   scripts/test.sh              # Release build in build/
#   scripts/test.sh --sanitize   # ASan+UBSan build in build-asan/
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/install-deps.sh"
if [[ "${1:-}" == "--sanitize" ]]; then
  export ITKIT_BUILD_DIR="$repo/build-asan"
  bash "$repo/scripts/build.sh" -DITKIT_SANITIZE=ON -DITKIT_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
else
  # -Werror: the tree is warning-clean under -Wall -Wextra, and stays so.
  bash "$repo/scripts/build.sh" -DITKIT_WERROR=ON
fi
cd "${ITKIT_BUILD_DIR:-$repo/build}"
ctest --output-on-failure -j "${ITKIT_TEST_JOBS:-2}" --timeout 900
