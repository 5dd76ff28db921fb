// Wall and CPU clocks for the per-stage timings in SegmentReport.
#pragma once

#include <sys/resource.h>

#include <chrono>

namespace itkit::pipeline {

using Clock = std::chrono::steady_clock;

inline double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Process CPU seconds (all threads): on a shared machine wall time says little about
// what a stage costs; CPU time does.
inline double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// Accumulates wall and CPU time of one part of a loop.
struct PartTimer {
  double wall = 0, cpu = 0;
  Clock::time_point t0;
  double c0 = 0;
  void Start() { t0 = Clock::now(); c0 = CpuSeconds(); }
  void Stop() { wall += SecondsSince(t0); cpu += CpuSeconds() - c0; }
};

}  // namespace itkit::pipeline
