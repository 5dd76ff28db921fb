# Sourced by run.sh, ablation.sh and speed.sh on the GPU machine (with $repo set):
# where the NVIDIA libraries are (cuDNN from the Python venv's wheel, cuBLAS from the
# CUDA toolkit or a wheel), and the bundle made by pack.sh unpacked into $dest. Sets
# cudnn_lib, cublas_pip, bundle, dest; device_env_log sends the script's output to
# $OUT/NAME too; device_env_unpack fails when there is no bundle; device_env_export
# sets LD_LIBRARY_PATH once $dest holds the binaries; device_env_ready does both or
# says why not.
cudnn_lib="$(python3 -c 'import nvidia.cudnn,os;print(os.path.join(list(nvidia.cudnn.__path__)[0],"lib"))' 2>/dev/null)"
cublas_pip="$(python3 -c 'import nvidia.cublas,os;print(os.path.join(list(nvidia.cublas.__path__)[0],"lib"))' 2>/dev/null)"
bundle="$repo/build-device/bundle.tar.xz"
dest=/tmp/itkit-device

device_env_unpack() {
  [[ -f "$bundle" ]] || return 1
  rm -rf "$dest" && mkdir -p "$dest" && tar -C "$dest" -xJf "$bundle"
}

device_env_log() {
  OUT="${OUT:-$repo/build-device/out}"
  mkdir -p "$OUT"
  exec > >(tee "$OUT/$1") 2>&1
}

device_env_ready() {
  device_env_unpack || { echo "no $bundle: run bench/device/pack.sh first"; return 1; }
  device_env_export
}

device_env_export() {
  export LD_LIBRARY_PATH="${cudnn_lib:+$cudnn_lib:}/usr/local/cuda/lib64${cublas_pip:+:$cublas_pip}:$dest/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}
