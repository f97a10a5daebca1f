#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace imgfs {
namespace {

LogLevel LevelFromEnv() {
  const char* v = std::getenv("IMGFS_LOG");
  if (v == nullptr) return LogLevel::kWarning;
  if (std::strcmp(v, "debug") == 0) return LogLevel::kDebug;
  if (std::strcmp(v, "info") == 0) return LogLevel::kInfo;
  if (std::strcmp(v, "error") == 0) return LogLevel::kError;
  return LogLevel::kWarning;
}

std::atomic<int> g_level{static_cast<int>(LevelFromEnv())};
std::atomic<int> g_fd{2};

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load()); }
void SetLogFd(int fd) { g_fd = fd; }

void LogLine(LogLevel level, const std::string& line) {
  char stamp[32];
  std::time_t now = std::time(nullptr);
  struct tm tm_buf;
  gmtime_r(&now, &tm_buf);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm_buf);
  std::string out = std::string(stamp) + " imgfs " + LevelName(level) + ": " + line + "\n";
  ssize_t ignored = ::write(g_fd.load(), out.data(), out.size());
  (void)ignored;
}

}  // namespace imgfs
