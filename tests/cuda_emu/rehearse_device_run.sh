#!/usr/bin/env bash
# bench/device/run.sh's pipeline and server steps on the emulated CUDA backend
# (tests/cuda_emu/README.md), on a small synthetic CT so that they take seconds:
# itkit_infer with the network on the GPU and the logits accumulated on the GPU, on the
# host, and in FP16, each label map against the CPU run's (>= 99.9 % of voxels, as on
# the GPU machine), and none allowed to fall back to the CPU; then the REST server's
# plain and force_cpu jobs (bench/device/server_check.py). Exit 1 on any failure.
#
#   tests/cuda_emu/rehearse_device_run.sh BIN_DIR PYTHON
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$1" python="$2"
cd "$repo"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$python" tools/make_sample_volume.py --out "$work/ct.nii.gz" --size 96 96 40 --seed 7 >/dev/null
infer=("$bin/itkit_infer_cuda_emu" --model models/demo_ct_body.onnx --input "$work/ct.nii.gz" --quiet)
"${infer[@]}" --device cpu --output "$work/lab_cpu.nii.gz"
status=0
for run in "cuda cuda" "cuda cpu" "cuda cuda --fp16"; do
  set -- $run
  name="lab_${1}_${2}${3:+_fp16}"
  echo "== pipeline: --device $1 --accumulate $2 ${3:-}"
  if ! "${infer[@]}" --device "$1" --accumulate "$2" ${3:-} --output "$work/$name.nii.gz" >"$work/$name.log" 2>&1; then
    cat "$work/$name.log"
    status=1
    continue
  fi
  # A silent fallback would make the comparison pass trivially (run.sh checks the same).
  if grep -qiE 'runs on the CPU|accumulated on the host' "$work/$name.log"; then
    cat "$work/$name.log"
    echo "FELL BACK to the CPU: not a GPU result"
    status=1
  fi
  "$python" bench/device/compare_labels.py "$work/lab_cpu.nii.gz" "$work/$name.nii.gz" --min 0.999 || status=1
done

if [[ -x "$bin/itkit_server_cuda_emu" ]]; then
  echo "== server: plain and force_cpu jobs"
  port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$python" bench/device/server_check.py --server "$bin/itkit_server_cuda_emu" --reference "$work/lab_cpu.nii.gz" \
    --image "$work/ct.nii.gz" --port "$port" || status=1
fi
exit $status
