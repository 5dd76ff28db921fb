#include "cuda/tuning_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace itkit::cuda {

int PickAlgorithm(const std::vector<AlgoCandidate>& candidates) {
  if (candidates.empty()) return -1;
  if (candidates[0].ms < 0) return 0;
  double fastest = -1.0;
  for (const AlgoCandidate& c : candidates)
    if (c.ms >= 0 && (fastest < 0 || c.ms < fastest)) fastest = c.ms;
  int pick = -1;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const AlgoCandidate& c = candidates[i];
    if (c.ms < 0 || c.ms > fastest * (1.0 + kTimingNoise)) continue;
    if (pick < 0 || c.workspace_bytes < candidates[static_cast<size_t>(pick)].workspace_bytes)
      pick = static_cast<int>(i);
  }
  return pick;
}

namespace {

template <typename T>
bool ParseNumber(std::string_view text, T& out) {
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

}  // namespace

TuningCache::TuningCache(std::string dir) : dir_(std::move(dir)) {
  if (!dir_.empty()) path_ = (std::filesystem::path(dir_) / kFileName).string();
}

std::string TuningCache::FormatLine(const std::string& key, const TunedAlgo& value) {
  return StrCat(key, '\t', value.algo, '\t', value.math_type, '\t', value.workspace_bytes, '\n');
}

std::optional<std::pair<std::string, TunedAlgo>> TuningCache::ParseLine(const std::string& line) {
  if (line.empty() || line[0] == '#') return std::nullopt;
  std::string_view rest(line);
  while (!rest.empty() && (rest.back() == '\n' || rest.back() == '\r')) rest.remove_suffix(1);
  std::string_view fields[4];
  for (int i = 0; i < 4; ++i) {
    const size_t tab = rest.find('\t');
    if (i < 3 && tab == std::string_view::npos) return std::nullopt;
    fields[i] = rest.substr(0, tab);
    rest = tab == std::string_view::npos ? std::string_view() : rest.substr(tab + 1);
  }
  if (!rest.empty() || fields[0].empty()) return std::nullopt;
  TunedAlgo v;
  if (!ParseNumber(fields[1], v.algo) || !ParseNumber(fields[2], v.math_type) ||
      !ParseNumber(fields[3], v.workspace_bytes) || v.algo < 0 || v.math_type < 0)
    return std::nullopt;
  return std::make_pair(std::string(fields[0]), v);
}

Result<size_t> TuningCache::Load() {
  if (path_.empty()) return size_t{0};
  std::ifstream in(path_);
  if (!in) return size_t{0};  // no cache yet
  std::lock_guard<std::mutex> lock(mutex_);
  size_t count = 0;
  std::string line;
  while (std::getline(in, line)) {
    auto entry = ParseLine(line);
    if (!entry) continue;
    entries_[entry->first] = entry->second;
    ++count;
  }
  return count;
}

std::optional<TunedAlgo> TuningCache::Find(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

size_t TuningCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

Status TuningCache::Insert(const std::string& key, const TunedAlgo& value) {
  if (key.empty() || key.find_first_of("\t\n\r") != std::string::npos)
    return InvalidArgument("tuning cache key must be non-empty and free of tabs/newlines: '", key, "'");
  std::lock_guard<std::mutex> lock(mutex_);
  entries_[key] = value;
  if (path_.empty()) return Status::Ok();
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return IoError("cannot create the tuning cache directory '", dir_, "': ", ec.message());
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return IoError("cannot open the tuning cache '", path_, "': ", std::strerror(errno));
  const std::string line = FormatLine(key, value);
  // One write() of one short line: O_APPEND keeps lines of concurrent writers whole.
  const ssize_t written = ::write(fd, line.data(), line.size());
  const int write_errno = errno;
  ::close(fd);
  if (written != static_cast<ssize_t>(line.size()))
    return IoError("cannot append to the tuning cache '", path_, "': ", std::strerror(write_errno));
  return Status::Ok();
}

}  // namespace itkit::cuda
