// Force-included (-include) before every source of the emulated CUDA backend
// (tests/cuda_emu/README.md): the CUDA headers in host mode, then what nvcc would
// provide to device code, run by the emulator's threads.
#pragma once

// One block runs at a time, its threads as fibers of one host thread: a function's
// static local is then exactly a block's shared variable.
#define __shared__ static
#define ITKIT_CUDA_EMU 1
#define __launch_bounds__(...)

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "itkit_emu/device.h"
#include "itkit_emu/launch.h"
#include "itkit_emu/wmma.h"
