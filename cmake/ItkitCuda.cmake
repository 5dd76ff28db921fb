# Decides whether the CUDA backend is built. AUTO: when nvcc is found (here under
# /usr/local/cuda). The library still builds and every CPU test still passes without it.
set(ITKIT_HAVE_CUDA OFF)
if(NOT ITKIT_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Set before enable_language, which otherwise caches the compiler's default (75
    # for nvcc 13): kernels for the H100/H200 (sm_90 code + compute_90 PTX), not a
    # PTX JIT at first start. Another GPU: -DITKIT_CUDA_ARCHITECTURES=... (e.g. 89).
    set(ITKIT_CUDA_ARCHITECTURES "90" CACHE STRING "CUDA architectures of the kernels")
    set(CMAKE_CUDA_ARCHITECTURES ${ITKIT_CUDA_ARCHITECTURES} CACHE STRING "" FORCE)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(ITKIT_HAVE_CUDA ON)
  elseif(ITKIT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "ITKIT_CUDA=ON but no CUDA compiler was found")
  endif()
endif()
message(STATUS "ITKIT CUDA backend: ${ITKIT_HAVE_CUDA}")
