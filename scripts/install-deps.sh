#!/usr/bin/env bash
# Installs every build and test dependency of ITKIT Server on Debian 12 (as root).
# Idempotent: packages already present are skipped by apt; the venv is reused.
# CUDA/cuDNN/cuBLAS are expected under /usr/local/cuda (not from apt); the build
# works without them.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

debian_packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  # libraries the binaries link
  libinsighttoolkit5-dev civetweb libcivetweb-dev libssl-dev libyaml-cpp-dev
  nlohmann-json3-dev libonnx-dev libprotobuf-dev protobuf-compiler libdnnl-dev
  zlib1g-dev libdeflate-dev
  # test and benchmark frameworks
  libgtest-dev libgmock-dev libbenchmark-dev
  # reference data nobody here made
  libonnx-testdata insighttoolkit5-examples mricron-data python3-pydicom
  # Python side: Debian's torch/onnx for exporting test models
  python3 python3-venv python3-pip python3-numpy python3-torch python3-onnx
  python3-nibabel python3-yaml python3-requests
  # headless browser for the status-page test
  chromium chromium-driver
)

missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: Debian packages present"
fi

# PyPI test tools live in a venv inside the repository; --system-site-packages keeps
# Debian's torch/onnx/numpy visible.
venv="$repo/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
pypi_packages=(onnxruntime SimpleITK selenium schemathesis pytest einops "requests>=2.32")
if ! "$venv/bin/python" -c "import onnxruntime, SimpleITK, selenium, schemathesis, pytest, einops, monai" 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check "${pypi_packages[@]}"
  # MONAI's network definitions for the model zoo; --no-deps keeps Debian's torch.
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps "monai==1.3.2"
fi
echo "install-deps: done"
