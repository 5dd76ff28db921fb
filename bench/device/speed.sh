#!/usr/bin/env bash
# The speed part of run.sh alone, for a short second lease (after pack.sh, like run.sh):
# the CUDA op cases (gtest filter ITKIT_OPS_GTEST_FILTER, default all precisions and the
# channels-last forms), the model zoo through the test runner in FP32 and FP16, ours vs
# PyTorch eager FP16 on the reference U-Net (per window, with the per-op-type profile,
# and the 320x512x512 pass) in the same run, the channels-last ablation
# (ITKIT_SPEED_ABLATION=1), and the kernel benchmarks matching ITKIT_KERNEL_BENCH_FILTER.
# About 70-100 s.
#   run(command="bash bench/device/speed.sh", carry=["build-device"], timeout_s=200)
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
source "$repo/bench/device/device_env.sh"
device_env_log speed.log
device_env_ready || exit 1
bin="$dest/bin"
commit="$(cat "$dest/COMMIT" 2>/dev/null || echo unknown)"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  commit: $commit"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
status=0
quiet() { grep -v '^\[itkit info\]'; }

echo "== op cases"
timeout 60 "$bin/itkit_backend_ops_test" --gtest_brief=1 --gtest_filter="${ITKIT_OPS_GTEST_FILTER:-*CudaOps*:*ChannelsLast*}" \
  >/tmp/itkit-ops.log 2>&1 || status=1
grep -E ' vs |FAIL|PASSED' /tmp/itkit-ops.log
if [[ -d "$dest/zoo" ]]; then
  echo "== zoo on CUDA fp32 (l2 <= 1e-3) and fp16 (l2 <= 1e-2, argmax >= 99.9 %)"
  timeout 45 "$bin/itkit_onnx_test_runner" --device cuda --repeat 3 --l2 1e-3 "$dest"/zoo/*/ 2>&1 | tail -1 || status=1
  timeout 45 "$bin/itkit_onnx_test_runner" --device cuda --fp16 --repeat 3 --l2 1e-2 --argmax-agreement 0.999 \
    --argmax-tie-margin 0.0009765625 "$dest"/zoo/*/ 2>&1 | tail -2 || status=1
fi
echo "== export reference U-Net"
timeout 60 python3 bench/device/torch_reference.py export --out /tmp/ref_unet.onnx >/dev/null 2>&1 || exit 1
unet=("$bin/itkit_cuda_bench" unet /tmp/ref_unet.onnx --fp16 --batch 4 --patch 128 --stride 64 --volume 320,512,512
      --tuning-cache /tmp/itkit-tuning)
echo "== ours fp16 (default: f16 channels-last storage, CUDA graphs)"
timeout 90 "${unet[@]}" --json "$OUT/ours_fp16.json" --profile 2>&1 | quiet || status=1
if [[ ${ITKIT_SPEED_ABLATION:-0} == 1 ]]; then
  echo "== ours fp16, ITKIT_CHANNELS_LAST=0"
  timeout 60 env ITKIT_CHANNELS_LAST=0 "${unet[@]}" 2>&1 | quiet || status=1
fi
echo "== PyTorch eager fp16"
timeout 60 python3 bench/device/torch_reference.py bench --batch 4 --patch 128 --stride 64 --volume 320,512,512 \
  --json "$OUT/torch_fp16.json" || status=1
if [[ -f "$OUT/ours_fp16.json" && -f "$OUT/torch_fp16.json" ]]; then
  python3 bench/device/torch_reference.py table --ours "$OUT/ours_fp16.json" --torch "$OUT/torch_fp16.json" \
    --commit "$commit" | tee "$OUT/performance.md"
fi
if [[ ${ITKIT_KERNEL_BENCH_FILTER:-none} != none ]]; then
  echo "== kernel benchmarks ($ITKIT_KERNEL_BENCH_FILTER)"
  timeout 60 "$bin/itkit_cuda_kernel_bench" --benchmark_min_time=0.3 --benchmark_filter="$ITKIT_KERNEL_BENCH_FILTER" \
    2>&1 | quiet || status=1
fi
echo "speed.sh: status $status"
exit $status
