// Temporary files that cannot outlive their owner: uploads and results are
// created O_EXCL with random names under one directory and unlinked by the
// destructor, so no error path can leave a file behind.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "server/api_error.h"

namespace itkit::server {

class TempFile {
 public:
  TempFile() = default;
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  ~TempFile() { Remove(); }
  TempFile(TempFile&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  TempFile& operator=(TempFile&& other) noexcept;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  const std::string& path() const { return path_; }
  bool empty() const { return path_.empty(); }
  void Remove();
  // Gives up ownership: the file stays on disk.
  std::string Release();

 private:
  std::string path_;
};

// Open file descriptor + owning TempFile; Write() appends and fails cleanly on
// a full disk (507), which is a server-side condition the client should see.
class TempWriter {
 public:
  TempWriter() = default;
  ~TempWriter();
  TempWriter(TempWriter&&) noexcept;
  TempWriter& operator=(TempWriter&&) = delete;
  TempWriter(const TempWriter&) = delete;

  static ApiResult<TempWriter> Create(const std::string& dir, std::string_view prefix,
                                      std::string_view suffix);
  ApiStatus Write(const char* data, size_t n);
  // Flushes and closes; the file stays owned by the returned TempFile.
  ApiResult<TempFile> Close();
  int64_t bytes() const { return bytes_; }

 private:
  int fd_ = -1;
  TempFile file_;
  int64_t bytes_ = 0;
};

// 2*n hex characters from the OS random source (request/job ids, file names).
std::string RandomHex(size_t n_bytes);

// A name of a fresh path in dir that does not exist yet (for outputs written by
// the pipeline, which creates the file itself).
std::string UniqueTempPath(const std::string& dir, std::string_view prefix, std::string_view suffix);

// Removes leftovers of an earlier run (files named with our prefixes) from dir.
void CleanTempDir(const std::string& dir);

// mkdir -p with mode 0700 for the last component.
Status MakeDirs(const std::string& path);

// rm -r of a directory we created (upload staging); errors are ignored.
void RemoveTree(const std::string& path);

}  // namespace itkit::server
