// Minimal logging: the library never prints on its own; it hands lines to a sink
// (stderr by default) that the server or CLI may replace.
#pragma once

#include <functional>
#include <string_view>

#include "itkit/status.h"

namespace itkit {

enum class LogLevel { kDebug = 0, kInfo, kWarning, kError };

using LogSink = std::function<void(LogLevel, std::string_view)>;
void SetLogSink(LogSink sink);
void SetLogLevel(LogLevel min_level);
void Log(LogLevel level, std::string_view message);

template <typename... Args>
void LogInfo(const Args&... args) { Log(LogLevel::kInfo, StrCat(args...)); }
template <typename... Args>
void LogWarning(const Args&... args) { Log(LogLevel::kWarning, StrCat(args...)); }
template <typename... Args>
void LogDebug(const Args&... args) { Log(LogLevel::kDebug, StrCat(args...)); }

}  // namespace itkit
