// The cuDNN algorithm cache: which algorithm (and math type, workspace) each distinct
// convolution runs with, found by timing once per shape and device. Kept in memory
// and, with CudaBackendOptions::tuning_cache_dir, in a text file there so that a
// restarted server does not time the algorithms again. Plain C++ (no CUDA types), so
// the file format is tested on machines without a GPU.
//
// File: "<dir>/cudnn_algos.tsv", one "key<TAB>algo<TAB>math_type<TAB>workspace_bytes"
// per line, appended as entries are found (O_APPEND, so concurrent processes at worst
// both append the same key; the last line read wins). Lines that do not parse are
// skipped, so a truncated or foreign file costs a re-tune, never an error.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "itkit/status.h"

namespace itkit::cuda {

struct TunedAlgo {
  int algo = 0;       // cudnnConvolutionFwdAlgo_t / cudnnConvolutionBwdDataAlgo_t value
  int math_type = 0;  // cudnnMathType_t value
  size_t workspace_bytes = 0;
};

// One usable candidate of an algorithm choice: its time (ms; < 0 when untimed, i.e. in
// the heuristic's order) and the workspace it needs.
struct AlgoCandidate {
  double ms = -1.0;
  size_t workspace_bytes = 0;
};

// Times closer than this to the fastest are timing noise.
constexpr double kTimingNoise = 0.03;

// Which candidate runs (index, or -1 when there is none): untimed, the first (the
// heuristic's best); timed, among those within kTimingNoise of the fastest the one
// with the smallest workspace (it lives in the plan's arena, often at the network's
// memory peak), the earlier on a tie. Shared by the convolution API's choice and the
// graph-API race, so both trade time for memory alike.
int PickAlgorithm(const std::vector<AlgoCandidate>& candidates);

class TuningCache {
 public:
  static constexpr const char* kFileName = "cudnn_algos.tsv";

  // `dir` empty: memory only.
  explicit TuningCache(std::string dir);

  // Reads the file if it exists. Returns the number of entries read.
  Result<size_t> Load();
  std::optional<TunedAlgo> Find(const std::string& key) const;
  // Remembers the entry and appends it to the file (IoError if the file cannot be
  // written; the entry is kept in memory regardless).
  Status Insert(const std::string& key, const TunedAlgo& value);
  size_t size() const;
  const std::string& path() const { return path_; }  // "" when memory only

  // One line of the file for an entry / the entry of one line (nullopt if malformed).
  static std::string FormatLine(const std::string& key, const TunedAlgo& value);
  static std::optional<std::pair<std::string, TunedAlgo>> ParseLine(const std::string& line);

 private:
  std::string dir_, path_;
  mutable std::mutex mutex_;
  std::map<std::string, TunedAlgo> entries_;
};

}  // namespace itkit::cuda
