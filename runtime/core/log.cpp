#include "itkit/log.h"

#include <cstdio>
#include <mutex>
#include <string>

namespace itkit {
namespace {

std::mutex& LogMutex() {
  static std::mutex m;
  return m;
}
LogSink& Sink() {
  static LogSink sink;
  return sink;
}
LogLevel& MinLevel() {
  static LogLevel level = LogLevel::kInfo;
  return level;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "?";
}

}  // namespace

void SetLogSink(LogSink sink) {
  std::lock_guard<std::mutex> lock(LogMutex());
  Sink() = std::move(sink);
}

void SetLogLevel(LogLevel min_level) {
  std::lock_guard<std::mutex> lock(LogMutex());
  MinLevel() = min_level;
}

void Log(LogLevel level, std::string_view message) {
  std::lock_guard<std::mutex> lock(LogMutex());
  if (level < MinLevel()) return;
  if (Sink()) {
    Sink()(level, message);
    return;
  }
  std::fprintf(stderr, "[itkit %s] %.*s\n", LevelName(level), static_cast<int>(message.size()),
               message.data());
}

}  // namespace itkit
