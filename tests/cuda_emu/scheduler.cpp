// The emulator's scheduler: a block's threads are fibers on the calling host thread,
// switched only where CUDA lets threads wait for each other (__syncthreads, warp
// collectives), round-robin otherwise. Deadlocks (a barrier some live thread never
// reaches, a collective naming an exited lane) end the launch with a description
// instead of hanging. See tests/cuda_emu/README.md.
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "itkit_emu/core.h"

extern "C" void itkit_emu_switch(void** save_sp, void* load_sp);
extern "C" void itkit_emu_fiber_entry();

#if defined(__x86_64__)
// Saves the callee-saved registers on the current stack, stores its pointer in
// *save_sp, loads load_sp and restores the registers saved there (System V ABI).
asm(R"(
  .text
  .globl itkit_emu_switch
  .type itkit_emu_switch, @function
itkit_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size itkit_emu_switch, .-itkit_emu_switch
)");
#else
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

namespace itkit_emu {

thread_local ThreadState current;

namespace {

constexpr size_t kStackBytes = size_t{256} << 10;
constexpr size_t kGuardBytes = 4096;  // below each stack: an overflow faults

struct Copy {
  void* dst;
  const void* src;
  int copy_bytes, src_bytes;
  unsigned char source_at_issue[16];  // the source may not change before the wait
};

enum class FiberState { kReady, kAtBarrier, kInCollective, kDone };

struct Fiber {
  char* stack = nullptr;  // guard page, then kStackBytes
  void* sp = nullptr;
  FiberState state = FiberState::kReady;
  uint3 idx{0, 0, 0};
  std::vector<Copy> open_group;
  std::deque<std::vector<Copy>> groups;
};

struct WarpState {
  uint32_t arrived = 0, mask = 0;
  const char* what = nullptr;
  Combine combine = nullptr;
  Slot in[32], out[32];
};

struct BlockRun {
  std::vector<Fiber>* fibers = nullptr;
  int threads = 0, live = 0, at_barrier = 0;
  std::vector<WarpState> warps;
  const std::function<void()>* body = nullptr;
  void* scheduler_sp = nullptr;
  bool failed = false;
  std::string error;
  std::vector<unsigned char> shared_storage;  // dynamic shared memory, 1024-byte aligned within
  unsigned char* shared = nullptr;
  size_t shared_bytes = 0;
  uint64_t serial = 0;  // unique per block run, for PoisonOncePerBlock
};

// ITKIT_CUDA_EMU_SCHEDULE: the order the scheduler resumes ready threads in, each
// pass: "forward" (thread 0 first, the default), "reverse", or "shuffle" (a new random
// order every pass). A kernel whose result depends on it has a race.
enum class Schedule { kForward, kReverse, kShuffle };
Schedule ScheduleFromEnv() {
  const char* v = std::getenv("ITKIT_CUDA_EMU_SCHEDULE");
  const std::string s = v ? v : "";
  if (s == "reverse") return Schedule::kReverse;
  if (s == "shuffle") return Schedule::kShuffle;
  return Schedule::kForward;
}

// ITKIT_CUDA_EMU_SEED: the shuffled schedule's seed (printed, so that a failure can be
// replayed); a new one per process when unset.
uint32_t ScheduleSeed() {
  const char* v = std::getenv("ITKIT_CUDA_EMU_SEED");
  const uint32_t seed = v && *v ? static_cast<uint32_t>(std::strtoul(v, nullptr, 10)) : std::random_device{}();
  if (ScheduleFromEnv() == Schedule::kShuffle)
    std::fprintf(stderr, "itkit_emu: shuffled schedule, ITKIT_CUDA_EMU_SEED=%u\n", static_cast<unsigned>(seed));
  return seed;
}

thread_local BlockRun* g_block = nullptr;
thread_local Fiber* g_fiber = nullptr;
thread_local std::vector<Fiber> g_fibers;  // stacks kept from launch to launch

char* NewStack() {
  void* p = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "itkit_emu: cannot map a fiber stack\n");
    std::abort();  // the test process itself cannot go on
  }
  mprotect(p, kGuardBytes, PROT_NONE);
  return static_cast<char*>(p);
}

// A fresh fiber's stack: six zeroed registers under the entry point, so that the
// first switch to it "returns" into itkit_emu_fiber_entry with an ABI-aligned stack.
void PrepareFiber(Fiber& f) {
  if (!f.stack) f.stack = NewStack();
  auto* top = reinterpret_cast<uintptr_t*>(f.stack + kGuardBytes + kStackBytes);
  *--top = 0;  // the entry's (never used) return address
  *--top = reinterpret_cast<uintptr_t>(&itkit_emu_fiber_entry);
  for (int i = 0; i < 6; ++i) *--top = 0;
  f.sp = top;
  f.state = FiberState::kReady;
  f.open_group.clear();
  f.groups.clear();
}

void Yield() { itkit_emu_switch(&g_fiber->sp, g_block->scheduler_sp); }

void SetCurrent(const Fiber& f, BlockRun& b) {
  current.thread_idx = f.idx;
  current.tid = static_cast<int>(&f - b.fibers->data());
  current.lane = current.tid % 32;
  current.warp = current.tid / 32;
}

void ReleaseBarrierIfComplete(BlockRun& b) {
  if (b.at_barrier == 0 || b.at_barrier < b.live) return;
  b.at_barrier = 0;
  for (int i = 0; i < b.threads; ++i)
    if ((*b.fibers)[static_cast<size_t>(i)].state == FiberState::kAtBarrier)
      (*b.fibers)[static_cast<size_t>(i)].state = FiberState::kReady;
}

std::string LaneList(uint32_t lanes) {
  std::string s;
  for (int l = 0; l < 32; ++l)
    if (lanes >> l & 1u) s += (s.empty() ? "" : ",") + std::to_string(l);
  return s.empty() ? "none" : s;
}

std::string DescribeDeadlock(const BlockRun& b) {
  std::string s = "deadlock: ";
  if (b.at_barrier > 0)
    s += std::to_string(b.at_barrier) + " of " + std::to_string(b.live) + " live threads wait at __syncthreads; ";
  for (size_t w = 0; w < b.warps.size(); ++w) {
    const WarpState& ws = b.warps[w];
    if (!ws.arrived) continue;
    s += "warp " + std::to_string(w) + ": lanes " + LaneList(ws.arrived) + " wait in " + ws.what + " for lanes " +
         LaneList(ws.mask & ~ws.arrived) + "; ";
  }
  return s;
}

}  // namespace

[[noreturn]] void Fail(const std::string& message) {
  if (!g_block || !g_fiber) {
    std::fprintf(stderr, "itkit_emu: %s (outside a kernel)\n", message.c_str());
    std::abort();
  }
  BlockRun& b = *g_block;
  if (!b.failed) {
    b.failed = true;
    b.error = "thread (" + std::to_string(current.thread_idx.x) + "," + std::to_string(current.thread_idx.y) + "," +
              std::to_string(current.thread_idx.z) + "): " + message;
  }
  g_fiber->state = FiberState::kDone;
  Yield();
  __builtin_unreachable();  // a failed block's fibers are never resumed
}

void BlockBarrier() {
  BlockRun& b = *g_block;
  ++b.at_barrier;
  if (b.at_barrier == b.live) {
    ReleaseBarrierIfComplete(b);
    return;
  }
  g_fiber->state = FiberState::kAtBarrier;
  Yield();
}

void WarpCollective(const char* what, uint32_t mask, const Slot& in, Slot* out, Combine combine) {
  BlockRun& b = *g_block;
  const int lane = current.lane;
  WarpState& w = b.warps[static_cast<size_t>(current.warp)];
  if (!(mask >> lane & 1u)) Fail(std::string(what) + ": the calling lane is not in the mask");
  if (w.arrived == 0) {
    w.mask = mask;
    w.what = what;
    w.combine = combine;
  } else if (w.mask != mask || std::strcmp(w.what, what) != 0) {  // each intrinsic has one combine
    Fail(std::string(what) + " (mask " + LaneList(mask) + ") while lanes " + LaneList(w.arrived) + " wait in " +
         w.what + " (mask " + LaneList(w.mask) + "): divergent warp collectives");
  }
  w.in[lane] = in;
  w.arrived |= 1u << lane;
  if (w.arrived == mask) {
    w.combine(w.in, w.out, mask);
    w.arrived = 0;
    const int base = current.warp * 32;
    for (int l = 0; l < 32; ++l) {
      const size_t t = static_cast<size_t>(base + l);
      if ((mask >> l & 1u) && t < b.fibers->size() && (*b.fibers)[t].state == FiberState::kInCollective)
        (*b.fibers)[t].state = FiberState::kReady;
    }
  } else {
    g_fiber->state = FiberState::kInCollective;
    Yield();  // a failed block's fibers are never resumed
  }
  *out = w.out[lane];
}

void PoisonOncePerBlock(void* shared_variable, size_t bytes) {
  thread_local std::unordered_map<void*, uint64_t> poisoned_in;  // variable -> block serial
  uint64_t& serial = poisoned_in[shared_variable];
  if (serial == g_block->serial) return;
  serial = g_block->serial;
  std::memset(shared_variable, 0xff, bytes);
}

unsigned char* DynamicSharedBase() { return g_block->shared; }
size_t DynamicSharedBytes() { return g_block->shared_bytes; }

void CopyAsyncIssue(void* dst, const void* src, int copy_bytes, int src_bytes) {
  if (copy_bytes != 4 && copy_bytes != 8 && copy_bytes != 16) Fail("cp.async: cp-size must be 4, 8 or 16 bytes");
  if (src_bytes < 0 || src_bytes > copy_bytes) Fail("cp.async: src-size beyond cp-size");
  if (reinterpret_cast<uintptr_t>(dst) % static_cast<uintptr_t>(copy_bytes) != 0 ||
      (src_bytes > 0 && reinterpret_cast<uintptr_t>(src) % static_cast<uintptr_t>(copy_bytes) != 0))
    Fail("cp.async: source or destination not aligned to the copy size");
  Copy c{dst, src, copy_bytes, src_bytes, {}};
  std::memcpy(c.source_at_issue, src, static_cast<size_t>(src_bytes));
  std::memset(dst, 0xff, static_cast<size_t>(copy_bytes));
  g_fiber->open_group.push_back(c);
}

void CopyAsyncCommit() {
  g_fiber->groups.push_back(std::move(g_fiber->open_group));
  g_fiber->open_group.clear();
}

void CopyAsyncWait(int keep_newest) {
  auto& groups = g_fiber->groups;
  while (static_cast<int>(groups.size()) > keep_newest) {
    for (const Copy& c : groups.front()) {
      if (std::memcmp(c.source_at_issue, c.src, static_cast<size_t>(c.src_bytes)) != 0)
        Fail("cp.async: the source changed between the copy and its wait_group (undefined on the GPU)");
      std::memcpy(c.dst, c.src, static_cast<size_t>(c.src_bytes));
      std::memset(static_cast<char*>(c.dst) + c.src_bytes, 0, static_cast<size_t>(c.copy_bytes - c.src_bytes));
    }
    groups.pop_front();
  }
}

}  // namespace itkit_emu

extern "C" void itkit_emu_fiber_entry() {
  using namespace itkit_emu;
  (*g_block->body)();
  Fiber& f = *g_fiber;
  if (!f.open_group.empty() || !f.groups.empty())
    Fail("the thread exited with cp.async copies it never waited for");
  f.state = FiberState::kDone;
  --g_block->live;
  ReleaseBarrierIfComplete(*g_block);
  Yield();
  __builtin_unreachable();
}

namespace itkit_emu {

bool RunGrid(const char* kernel, dim3 grid, dim3 block, size_t dynamic_shared, const std::function<void()>& body,
             std::string* error) {
  const int threads = static_cast<int>(block.x * block.y * block.z);
  if (g_fibers.size() < static_cast<size_t>(threads)) g_fibers.resize(static_cast<size_t>(threads));
  BlockRun b;
  b.fibers = &g_fibers;
  b.threads = threads;
  b.body = &body;
  b.warps.resize(static_cast<size_t>((threads + 31) / 32));
  current.block_dim = block;
  current.grid_dim = grid;
  static const Schedule schedule = ScheduleFromEnv();
  thread_local std::mt19937 rng(ScheduleSeed());
  std::vector<int> order(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) order[static_cast<size_t>(t)] = schedule == Schedule::kReverse ? threads - 1 - t : t;
  // The blocks in the schedule's order too (a GPU runs them in any order, at once).
  const uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
  std::vector<uint64_t> block_order(static_cast<size_t>(blocks));
  for (uint64_t i = 0; i < blocks; ++i)
    block_order[static_cast<size_t>(i)] = schedule == Schedule::kReverse ? blocks - 1 - i : i;
  if (schedule == Schedule::kShuffle) std::shuffle(block_order.begin(), block_order.end(), rng);
  for (const uint64_t linear : block_order) {
    const auto bx = static_cast<unsigned>(linear % grid.x), by = static_cast<unsigned>(linear / grid.x % grid.y),
               bz = static_cast<unsigned>(linear / (uint64_t{grid.x} * grid.y));
    current.block_idx = uint3{bx, by, bz};
    thread_local uint64_t block_serial = 0;
    b.serial = ++block_serial;
    b.live = threads;
    b.at_barrier = 0;
    for (WarpState& w : b.warps) w.arrived = 0;
    // Uninitialised on the GPU: NaN if read unwritten. 1024-byte aligned, as the
    // GPU's shared window is (kernels declare __align__(128) and more).
    b.shared_storage.assign(dynamic_shared + 1024, 0xff);
    b.shared_bytes = dynamic_shared;
    b.shared = b.shared_storage.data() + (1024 - reinterpret_cast<uintptr_t>(b.shared_storage.data()) % 1024) % 1024;
    for (int t = 0; t < threads; ++t) {
      Fiber& f = g_fibers[static_cast<size_t>(t)];
      PrepareFiber(f);
      f.idx = uint3{static_cast<unsigned>(t) % block.x, static_cast<unsigned>(t) / block.x % block.y,
                    static_cast<unsigned>(t) / (block.x * block.y)};
    }
    BlockRun* outer_block = g_block;
    Fiber* outer_fiber = g_fiber;
    g_block = &b;
    int done = 0;
    while (done < threads && !b.failed) {
      bool ran = false;
      done = 0;
      if (schedule == Schedule::kShuffle) std::shuffle(order.begin(), order.end(), rng);
      for (int i = 0; i < threads && !b.failed; ++i) {
        const int t = order[static_cast<size_t>(i)];
        Fiber& f = g_fibers[static_cast<size_t>(t)];
        if (f.state == FiberState::kDone) {
          ++done;
          continue;
        }
        if (f.state != FiberState::kReady) continue;
        g_fiber = &f;
        SetCurrent(f, b);
        itkit_emu_switch(&b.scheduler_sp, f.sp);
        ran = true;
      }
      if (!ran && done < threads && !b.failed) {
        b.failed = true;
        b.error = DescribeDeadlock(b);
      }
    }
    g_block = outer_block;
    g_fiber = outer_fiber;
    if (b.failed) {
      *error = std::string(kernel) + ", block (" + std::to_string(bx) + "," + std::to_string(by) + "," +
               std::to_string(bz) + "): " + b.error;
      return false;
    }
  }
  return true;
}

}  // namespace itkit_emu
