// Logging for imgfs: one line per event on stderr (the foreground) or to the file the daemon
// was given. Thread-safe: each line is written with one write(2).
#pragma once

#include <sstream>
#include <string>

namespace imgfs {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Lines below `level` are dropped. Default kWarning; IMGFS_LOG=debug|info|warning|error.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Sends log lines to `fd` from now on (default 2).
void SetLogFd(int fd);
void LogLine(LogLevel level, const std::string& line);

}  // namespace imgfs

#define IMGFS_LOG(level, expr)                                         \
  do {                                                                 \
    if (::imgfs::LogLevel::level >= ::imgfs::GetLogLevel()) {          \
      std::ostringstream imgfs_log_os_;                                \
      imgfs_log_os_ << expr;                                           \
      ::imgfs::LogLine(::imgfs::LogLevel::level, imgfs_log_os_.str()); \
    }                                                                  \
  } while (0)
