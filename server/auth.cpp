#include "server/auth.h"

#include <cctype>

namespace itkit::server {

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Touch max(len) bytes whatever the inputs; the length difference is folded
  // into the result instead of returning early.
  size_t n = a.size() > b.size() ? a.size() : b.size();
  volatile unsigned char diff = static_cast<unsigned char>(a.size() != b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = static_cast<unsigned char>(diff | (x ^ y));
  }
  return diff == 0;
}

ApiStatus CheckBearer(std::string_view header, std::string_view api_key) {
  if (api_key.empty()) return ApiOk();
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  constexpr std::string_view kScheme = "bearer";
  bool scheme_ok = header.size() > kScheme.size();
  for (size_t i = 0; scheme_ok && i < kScheme.size(); ++i) {
    scheme_ok = std::tolower(static_cast<unsigned char>(header[i])) == kScheme[i];
  }
  if (!scheme_ok || header[kScheme.size()] != ' ') {
    return MakeError(401, "authentication required: send 'Authorization: Bearer <API key>'");
  }
  std::string_view token = header.substr(kScheme.size() + 1);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  if (!ConstantTimeEquals(token, api_key)) return MakeError(401, "invalid API key");
  return ApiOk();
}

}  // namespace itkit::server
