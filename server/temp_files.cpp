#include "server/temp_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>

namespace itkit::server {

namespace fs = std::filesystem;

namespace {
// Every file we create starts with this, so CleanTempDir never touches others.
constexpr std::string_view kPrefix = "itkit-";
}  // namespace

TempFile& TempFile::operator=(TempFile&& other) noexcept {
  if (this != &other) {
    Remove();
    path_ = std::move(other.path_);
    other.path_.clear();
  }
  return *this;
}

void TempFile::Remove() {
  if (!path_.empty()) {
    ::unlink(path_.c_str());
    path_.clear();
  }
}

std::string TempFile::Release() {
  std::string p = std::move(path_);
  path_.clear();
  return p;
}

std::string RandomHex(size_t n_bytes) {
  static std::mutex mu;
  static std::ifstream urandom("/dev/urandom", std::ios::binary);
  static std::mt19937_64 fallback(std::random_device{}());
  std::string bytes(n_bytes, '\0');
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!urandom || !urandom.read(bytes.data(), static_cast<std::streamsize>(n_bytes))) {
      for (auto& c : bytes) c = static_cast<char>(fallback());
    }
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n_bytes);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

std::string UniqueTempPath(const std::string& dir, std::string_view prefix, std::string_view suffix) {
  return dir + "/" + std::string(kPrefix) + std::string(prefix) + "-" + RandomHex(12) + std::string(suffix);
}

TempWriter::~TempWriter() {
  if (fd_ >= 0) ::close(fd_);
}

TempWriter::TempWriter(TempWriter&& other) noexcept
    : fd_(other.fd_), file_(std::move(other.file_)), bytes_(other.bytes_) {
  other.fd_ = -1;
}

ApiResult<TempWriter> TempWriter::Create(const std::string& dir, std::string_view prefix,
                                         std::string_view suffix) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::string path = UniqueTempPath(dir, prefix, suffix);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      TempWriter w;
      w.fd_ = fd;
      w.file_ = TempFile(path);
      return w;
    }
    if (errno != EEXIST) {
      return MakeError(500, "cannot create a temporary file in " + dir + ": " + std::strerror(errno));
    }
  }
  return MakeError(500, "cannot create a unique temporary file in " + dir);
}

ApiStatus TempWriter::Write(const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd_, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOSPC || errno == EDQUOT) return MakeError(507, "server out of disk space for uploads");
      return MakeError(500, std::string("writing a temporary file failed: ") + std::strerror(errno));
    }
    data += w;
    n -= static_cast<size_t>(w);
    bytes_ += w;
  }
  return ApiOk();
}

ApiResult<TempFile> TempWriter::Close() {
  if (fd_ >= 0) {
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return MakeError(500, std::string("closing a temporary file failed: ") + std::strerror(errno));
  }
  return std::move(file_);
}

void CleanTempDir(const std::string& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.rfind(kPrefix, 0) == 0) fs::remove_all(it->path(), ec);
  }
}

Status MakeDirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return IoError("cannot create directory ", path, ": ", ec.message());
  if (!fs::is_directory(path, ec)) return IoError(path, " is not a directory");
  if (::access(path.c_str(), W_OK | X_OK) != 0) return IoError("directory ", path, " is not writable");
  return Status::Ok();
}

void RemoveTree(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  fs::remove_all(path, ec);
}

}  // namespace itkit::server
