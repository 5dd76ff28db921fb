#!/usr/bin/env bash
# Runs onnx_importer_fuzz with a seed corpus of small models from Debian's ONNX
# conformance data (libonnx-testdata). Crashes land in fuzz-artifacts/onnx_importer/;
# copy the interesting ones to tests/regression/onnx_importer/ (unit-tested).
#   fuzz/run_onnx_importer_fuzz.sh BUILD_DIR [SECONDS] [extra libFuzzer flags...]
# ITKIT_FUZZ_BIN overrides the binary (default BUILD_DIR/fuzz/onnx_importer_fuzz). To
# keep going past crashes and collect them all: ... 900 -fork=1 -ignore_crashes=1
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:?usage: $0 BUILD_DIR [SECONDS] [libFuzzer flags]}"
seconds="${2:-600}"
shift $(( $# >= 2 ? 2 : 1 ))
data=/usr/lib/python3/dist-packages/onnx/backend/test/data
work="$repo/fuzz-artifacts/onnx_importer"
mkdir -p "$work/corpus" "$work/crashes"
seeds=(node/test_add node/test_conv_with_strides_padding node/test_constant node/test_cast_FLOAT_to_FLOAT16
       node/test_resize_upsample_scales_nearest node/test_reshape_negative_dim node/test_slice
       node/test_split_variable_parts_1d node/test_upsample_nearest node/test_gemm_all_attributes
       node/test_instancenorm_example node/test_maxpool_2d_pads node/test_where_example
       node/test_constantofshape_int_zeros node/test_if pytorch-converted/test_PReLU_1d_multiparam
       pytorch-operator/test_operator_add_broadcast pytorch-converted/test_Conv2d_groups)
for s in "${seeds[@]}"; do
  [[ -f "$data/$s/model.onnx" ]] && cp "$data/$s/model.onnx" "$work/corpus/seed_$(basename "$s").onnx"
done
# Test models of the unit tests too, when they exist.
cp "$repo"/tests/data/onnx/*.onnx "$work/corpus/" 2>/dev/null || true
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
exec "${ITKIT_FUZZ_BIN:-$build/fuzz/onnx_importer_fuzz}" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 \
  -timeout=10 -max_len=65536 -dict="$repo/fuzz/onnx.dict" -artifact_prefix="$work/crashes/" \
  -print_final_stats=1 "$@" "$work/corpus"
