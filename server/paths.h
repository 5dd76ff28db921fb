// Model files may only come from configured directories. Paths are resolved
// after symlinks (realpath of the longest existing prefix) before the check, so
// "../" tricks and symlinks pointing outside are refused (403) and nothing
// about files outside is revealed.
#pragma once

#include <string>
#include <vector>

#include "server/api_error.h"

namespace itkit::server {

class PathPolicy {
 public:
  // Adds a directory (canonicalised); ignored when it does not exist.
  void AddRoot(const std::string& dir);
  const std::vector<std::string>& roots() const { return roots_; }
  bool Contains(const std::string& canonical_path) const;

  // Resolves user_path (relative: against the first root). 403 outside every
  // root, 404 inside but missing, 400 not a regular file. `field` names the
  // request field in messages.
  ApiResult<std::string> Resolve(const std::string& user_path, const std::string& field) const;

 private:
  std::vector<std::string> roots_;
};

}  // namespace itkit::server
