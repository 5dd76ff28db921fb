#!/usr/bin/env bash
# Prepares what bench/device/run.sh needs on the GPU machine, HERE (the build
# machine): builds the CUDA test/benchmark programs and itkit_infer, generates the
# model zoo, and packs them with the shared libraries the GPU machine's image lacks
# (oneDNN, Google Benchmark, ITK, yaml-cpp; not the NVIDIA libraries, which it has)
# into build-device/bundle.tar.xz.
# The device machine cannot download anything and its image has no oneDNN, GTest or
# Google Benchmark to build against, so we carry binaries (x86-64, glibc >= 2.36).
#
#   bench/device/pack.sh [BUILD_DIR]        (default build-cuda; -j2 here)
# then run bench/device/run.sh there with carry=["build-device"].
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$repo/build-cuda}"
out="$repo/build-device"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

cmake -S "$repo" -B "$build" -G Ninja -DITKIT_CUDA=ON -DITKIT_BUILD_SERVER=ON >/dev/null
# itkit_infer (with ITK's libraries, ~13 MB) for the pipeline's GPU accumulation check,
# itkit_server for the REST check (bench/device/server_check.py).
targets=(itkit_backend_ops_test itkit_cuda_bench itkit_cuda_kernel_bench itkit_onnx_test_runner itkit_infer
         itkit_server)
ninja -C "$build" -j"${JOBS:-2}" "${targets[@]}"

mkdir -p "$stage/bin" "$stage/lib" "$stage/zoo"
for t in "${targets[@]}"; do
  f="$(find "$build" -type f -name "$t" -perm -u+x | head -1)"
  [[ -n "$f" ]] || { echo "pack: $t was not built" >&2; exit 1; }
  cp "$f" "$stage/bin/"
  strip --strip-unneeded "$stage/bin/$t"
done
# Shared libraries of ours that are not glibc/libstdc++ and not NVIDIA's.
for bin in "$stage"/bin/*; do
  ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
      libcuda.so*|libcudnn*|libcublas*|libcudart*|libnvidia*) ;;
      *) cp -nL "$lib" "$stage/lib/" ;;
    esac
  done
done

# The model zoo (PyTorch 1.13 exports here; the GPU machine's torch 2.x exports differently).
"$repo/.venv/bin/python" "$repo/tests/models/make_zoo.py" --out "$stage/zoo" >/dev/null
# Only the models and their first data set travel.
find "$stage/zoo" -path '*test_data_set_[1-9]*' -prune -exec rm -rf {} +

# ONNX's node conformance cases (Debian's libonnx-testdata; about 27 MB, 5 MB packed).
node_cases=/usr/lib/python3/dist-packages/onnx/backend/test/data/node
[[ -d "$node_cases" ]] && mkdir -p "$stage/conformance" && cp -r "$node_cases" "$stage/conformance/node"

(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo uncommitted) >"$stage/COMMIT"
if [[ -n "$(cd "$repo" && git status --porcelain 2>/dev/null | head -1)" ]]; then
  echo "$(cat "$stage/COMMIT")+dirty" >"$stage/COMMIT"
fi
mkdir -p "$out"
rm -f "$out/bundle.tar.xz"
# xz -9: its 64 MiB dictionary spans the binaries, which share most of their code (the
# runtime and the CUDA kernels are linked into each): 56 MB instead of 68 MB at -6.
tar -C "$stage" -cf - . | xz -9 -T2 >"$out/bundle.tar.xz"
echo "pack: $(du -h "$out/bundle.tar.xz" | cut -f1) in $out/bundle.tar.xz (commit $(cat "$stage/COMMIT"))"
du -sh "$stage"/bin "$stage"/lib "$stage"/zoo
# The device tool carries at most 64 MiB in all.
size=$(stat -c %s "$out/bundle.tar.xz")
if ((size > 60 * 1024 * 1024)); then
  echo "pack: the bundle is $((size / 1048576)) MiB: over 60 of the device tool's 64 MiB carry limit" >&2
  exit 1
fi
