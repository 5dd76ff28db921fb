#!/usr/bin/env bash
# Ablation of the FP16 path on the GPU machine (after pack.sh, like run.sh): the
# reference U-Net's window time and sliding-window pass with the split of the decoder
# convolutions over their Concat, our own kernels (cuDNN instead), cuDNN's graph-API engines and channels-last
# storage (and, with ITKIT_ABLATION_ALL=1, f16 storage and CUDA graphs) switched off one
# at a time, plus TF32; ~2 minutes.
#   run(command="bench/device/ablation.sh", carry=["build-device"], timeout_s=300)
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
source "$repo/bench/device/device_env.sh"
device_env_log ablation.log
device_env_ready || exit 1
python3 bench/device/torch_reference.py export --out /tmp/ref_unet.onnx >/dev/null 2>&1 || exit 1
unet=("$dest/bin/itkit_cuda_bench" unet /tmp/ref_unet.onnx --batch 4 --patch 128 --stride 64 --volume 320,512,512
      --tuning-cache /tmp/itkit-tuning)
# Session 3 measured f16 storage (-6 %) and CUDA graphs (~0 %); ITKIT_ABLATION_ALL=1
# repeats those.
variants=("fp16" "fp16 ITKIT_DISABLE_PASSES=split_conv_over_concat" "fp16 ITKIT_OWN_KERNELS=library" "fp16 ITKIT_CUDNN_GRAPH=0"
  "fp16 ITKIT_CHANNELS_LAST=0"
  "fp32 tf32")
[[ ${ITKIT_ABLATION_ALL:-0} == 1 ]] && variants+=("fp16 ITKIT_HALF_STORAGE=0" "fp16 ITKIT_CUDA_GRAPHS=0" "fp32")
for variant in "${variants[@]}"; do
  set -- $variant
  flags=()
  [[ $1 == fp16 ]] && flags+=(--fp16)
  [[ ${2:-} == tf32 ]] && flags+=(--tf32)
  env=()
  [[ ${2:-} == ITKIT_* ]] && env+=("$2")
  echo "== $variant"
  timeout "${ITKIT_ABLATION_TIMEOUT_S:-90}" env "${env[@]}" "${unet[@]}" "${flags[@]}" 2>&1 | grep -v '^\[itkit info\]'
done
