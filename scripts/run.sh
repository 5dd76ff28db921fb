#!/usr/bin/env bash
# The main job: installs what is missing, builds, and starts itkit_server on
# localhost:8000 with the bundled models/ loaded. Extra arguments go to the server
# (e.g. --port 8001, --host 0.0.0.0 --api-key KEY).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/install-deps.sh"
bash "$repo/scripts/build.sh"
server="$repo/build/server/itkit_server"
port=8000
args=("$@")
for ((i = 0; i < ${#args[@]}; ++i)); do
  [[ "${args[$i]}" == "--port" && $((i + 1)) -lt ${#args[@]} ]] && port="${args[$((i + 1))]}"
done
cat <<MSG

ITKIT Server is starting on http://localhost:$port with the models in $repo/models.
Segment the bundled sample CT from another terminal:

  curl -F image=@$repo/models/sample/sample_ct.nii.gz -F model_name=demo_ct_body \\
       -o segmentation.nii.gz http://localhost:$port/api/infer

Status page: http://localhost:$port/   Stop with Ctrl+C.

MSG
exec "$server" --host 127.0.0.1 --port "$port" --model-dir "$repo/models" "${args[@]}"
