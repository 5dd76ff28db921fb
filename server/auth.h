// API-key authentication: "Authorization: Bearer KEY", compared in constant
// time so response timing does not leak how much of a guess was right.
#pragma once

#include <string>
#include <string_view>

#include "server/api_error.h"

namespace itkit::server {

bool ConstantTimeEquals(std::string_view a, std::string_view b);

// OK when no key is configured or the header carries it; 401 otherwise.
ApiStatus CheckBearer(std::string_view authorization_header, std::string_view api_key);

}  // namespace itkit::server
