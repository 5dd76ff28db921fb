#include "server/paths.h"

#include <filesystem>

namespace itkit::server {

namespace fs = std::filesystem;

void PathPolicy::AddRoot(const std::string& dir) {
  std::error_code ec;
  fs::path canonical = fs::canonical(dir, ec);
  if (ec || !fs::is_directory(canonical, ec)) return;
  std::string s = canonical.string();
  for (const auto& r : roots_) {
    if (r == s) return;
  }
  roots_.push_back(s);
}

bool PathPolicy::Contains(const std::string& p) const {
  for (const auto& r : roots_) {
    if (p == r) return true;
    if (p.size() > r.size() && p.compare(0, r.size(), r) == 0 && (r == "/" || p[r.size()] == '/')) return true;
  }
  return false;
}

ApiResult<std::string> PathPolicy::Resolve(const std::string& user_path, const std::string& field) const {
  if (user_path.empty()) return MakeError(400, field + " is empty");
  if (user_path.find('\0') != std::string::npos || user_path.size() > 4096) {
    return MakeError(400, field + " is not a valid path");
  }
  const std::string outside = field + " is outside the server's model directories (see --model-dir and --model-root)";
  if (roots_.empty()) return MakeError(403, outside);
  fs::path p(user_path);
  if (p.is_relative()) p = fs::path(roots_.front()) / p;
  std::error_code ec;
  // weakly_canonical: realpath of the existing prefix + the normalised rest,
  // so a symlink anywhere along the way is followed before the check.
  fs::path resolved = fs::weakly_canonical(p, ec);
  if (ec) return MakeError(403, outside);
  std::string r = resolved.string();
  if (!Contains(r)) return MakeError(403, outside);
  fs::file_status st = fs::status(resolved, ec);
  if (ec || !fs::exists(st)) return MakeError(404, field + " not found: " + user_path);
  if (!fs::is_regular_file(st)) return MakeError(400, field + " is not a regular file: " + user_path);
  return r;
}

}  // namespace itkit::server
