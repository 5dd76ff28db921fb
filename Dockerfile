# ITKIT Server container image: itkit_server with the CUDA backend, the bundled demo
# model, running as a non-root user on port 8000. See docs/deployment.md.
#
#   docker build -t itkit-server .
#   docker run --rm --gpus all -p 8000:8000 itkit-server
#
# UNTESTED: no Docker engine runs where this project is developed and tested, so
# this file has never been built. It follows the project's own build path:
#  * build stage: Debian 12 — the platform scripts/install-deps.sh targets and CI
#    builds on (the code is written against Debian 12's oneDNN 2.6, ITK 5.2 and
#    CMake >= 3.25) — with nvcc, cuBLAS and cuDNN 9 from NVIDIA's CUDA repository
#    for Debian 12, then scripts/build.sh;
#  * runtime stage: NVIDIA's CUDA runtime image with cuDNN 9, plus the binaries and
#    the shared libraries they need that the runtime image does not have (ITK,
#    CivetWeb, oneDNN, yaml-cpp, OpenSSL, ...), found with ldd.

ARG CUDA_VERSION=12.6
ARG RUNTIME_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------- build
FROM debian:12 AS build
ARG CUDA_VERSION
# GPU generations to compile for (sm_XX): A100, A10/A40/RTX 30, L4/L40/RTX 40, H100/H200.
ARG CUDA_ARCHITECTURES="80;86;89;90"
ENV DEBIAN_FRONTEND=noninteractive

# The "toolchain" and "libraries the binaries link" groups of scripts/install-deps.sh
# (its test, Python and browser groups are not needed to build the binaries), plus
# libdeflate-dev, which pipeline/CMakeLists.txt uses when present (faster NIfTI gzip).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libinsighttoolkit5-dev civetweb libcivetweb-dev libssl-dev libyaml-cpp-dev \
      nlohmann-json3-dev libonnx-dev libprotobuf-dev protobuf-compiler libdnnl-dev \
      zlib1g-dev libdeflate-dev \
      ca-certificates wget \
 && rm -rf /var/lib/apt/lists/*

# CUDA compiler and libraries (scripts/install-deps.sh expects them under /usr/local/cuda;
# here they come from NVIDIA's apt repository for Debian 12).
RUN wget -q https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb \
 && dpkg -i cuda-keyring_1.1-1_all.deb && rm cuda-keyring_1.1-1_all.deb \
 && apt-get update \
 && v="$(echo "${CUDA_VERSION}" | tr . -)" \
 && apt-get install -y --no-install-recommends \
      "cuda-nvcc-${v}" "cuda-cudart-dev-${v}" "libcublas-dev-${v}" libcudnn9-dev-cuda-12 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# scripts/build.sh: Release, Ninja, all targets. No tests or benchmarks in the image;
# warnings are not errors here (another compiler version than CI's may warn).
RUN ITKIT_BUILD_DIR=/src/build bash scripts/build.sh \
      -DITKIT_CUDA=ON \
      "-DCMAKE_CUDA_COMPILER=/usr/local/cuda-${CUDA_VERSION}/bin/nvcc" \
      "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" \
      -DBUILD_TESTING=OFF -DITKIT_BUILD_BENCH=OFF -DITKIT_WERROR=OFF

# /opt/itkit: bin/ (server, batch CLI, model runner), lib/ (non-system shared
# libraries), models/. glibc, libstdc++/libgcc and the CUDA libraries (cuDNN, cuBLAS,
# the driver) come from the runtime image. CivetWeb loads OpenSSL at run time as
# "libssl.so"/"libcrypto.so" (unversioned), hence the two links for --tls-cert.
RUN set -eux; \
    mkdir -p /opt/itkit/bin /opt/itkit/lib; \
    cp build/server/itkit_server build/pipeline/itkit_infer build/tools/itkit_run /opt/itkit/bin/; \
    ldd /opt/itkit/bin/* | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u \
      | grep -Ev '/lib(c|m|dl|pthread|rt|resolv|util|stdc\+\+|gcc_s|cuda|cudnn[^/]*|cublas|cublasLt|nvidia-[^/]*)\.so' \
      | xargs -r cp -L -t /opt/itkit/lib/; \
    cp -L /usr/lib/x86_64-linux-gnu/libssl.so.3 /usr/lib/x86_64-linux-gnu/libcrypto.so.3 /opt/itkit/lib/; \
    ln -sf libssl.so.3 /opt/itkit/lib/libssl.so; \
    ln -sf libcrypto.so.3 /opt/itkit/lib/libcrypto.so; \
    cp -r models /opt/itkit/models

# -------------------------------------------------------------------------- runtime
FROM ${RUNTIME_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# curl for the health check only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 itkit \
 && useradd --system --uid 10001 --gid itkit --home-dir /var/cache/itkit --no-create-home \
      --shell /usr/sbin/nologin itkit \
 && install -d -o itkit -g itkit -m 0750 /var/cache/itkit

COPY --from=build /opt/itkit /opt/itkit

# The cache directory holds uploads, results, uploaded models and the cuDNN tuning
# cache; CUDA's own JIT cache goes there too. Mount a volume on it (or, with a
# read-only root file system, an emptyDir / tmpfs).
ENV HOME=/var/cache/itkit \
    CUDA_CACHE_PATH=/var/cache/itkit/cuda-jit \
    PATH=/opt/itkit/bin:${PATH}
USER 10001:10001
WORKDIR /var/cache/itkit
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/api/health || exit 1

# The library path is set for the server only, so that curl and the image's other
# programs keep using the runtime image's own libraries.
ENTRYPOINT ["/usr/bin/env", "LD_LIBRARY_PATH=/opt/itkit/lib:/usr/local/nvidia/lib:/usr/local/nvidia/lib64", \
            "/opt/itkit/bin/itkit_server"]
CMD ["--host", "0.0.0.0", "--port", "8000", "--model-dir", "/opt/itkit/models", \
     "--cache-dir", "/var/cache/itkit"]
