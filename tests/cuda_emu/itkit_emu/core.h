// The emulator's machinery that device code reaches: the current thread's indices,
// block barriers, warp-collective exchanges, cp.async groups and failures.
// Implemented in scheduler.cpp; see tests/cuda_emu/README.md for the model.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace itkit_emu {

// The emulated thread that is running (set by the scheduler before each switch).
struct ThreadState {
  uint3 thread_idx{0, 0, 0}, block_idx{0, 0, 0};
  dim3 block_dim{1, 1, 1}, grid_dim{1, 1, 1};
  int tid = 0;  // linear index in the block
  int lane = 0, warp = 0;
};
extern thread_local ThreadState current;

// Ends the launch with `message` (printed, and the launch's error); never returns.
[[noreturn]] void Fail(const std::string& message);

// __syncthreads: every live thread of the block arrives; exited threads count as arrived.
void BlockBarrier();

// A warp-collective operation (shuffle, vote, ldmatrix, mma, __syncwarp): every lane
// in `mask` calls it with its input; once all have, `combine` computes each lane's
// output from all inputs. Lanes that diverge (another mask or kind while one is
// pending), a mask naming an exited lane, or a lane outside its own mask fail the
// launch, as they are undefined on the GPU.
struct Slot {
  alignas(16) unsigned char bytes[64];
};
using Combine = void (*)(const Slot* in, Slot* out, uint32_t mask);
void WarpCollective(const char* what, uint32_t mask, const Slot& in, Slot* out, Combine combine);

// A `__shared__` variable (a static under the emulator): filled with 0xff bytes the
// first time a block reaches its declaration (translate_cu.py adds the call).
void PoisonOncePerBlock(void* shared_variable, size_t bytes);

// Dynamic shared memory of the running block (poisoned with 0xff bytes at its start).
unsigned char* DynamicSharedBase();
size_t DynamicSharedBytes();
template <typename T>
T* DynamicShared() {
  return reinterpret_cast<T*>(DynamicSharedBase());
}

// cp.async: the copy is queued in the thread's open group, and its destination is
// poisoned (0xff) at once, so a read before the matching wait sees NaNs; the copy
// itself happens when a wait_group retires its group.
void CopyAsyncIssue(void* dst, const void* src, int copy_bytes, int src_bytes);
void CopyAsyncCommit();
void CopyAsyncWait(int keep_newest);

// Runs a grid: every block in turn, each block's threads as fibers. Returns false
// (with the message) when a thread failed or the block deadlocked.
bool RunGrid(const char* kernel, dim3 grid, dim3 block, size_t dynamic_shared, const std::function<void()>& body,
             std::string* error);

}  // namespace itkit_emu
