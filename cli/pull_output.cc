#include "cli/pull_output.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>

namespace imgfs::cli {
namespace {

constexpr int kDefaultWidth = 200;  // docker's, when the terminal does not say

int TerminalWidth(std::FILE* out) {
  struct winsize ws {};
  if (::ioctl(::fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return kDefaultWidth;
}

// Go's time.Duration.String() for whole seconds: "0s", "42s", "3m7s", "1h0m5s".
std::string GoDuration(int64_t seconds) {
  if (seconds <= 0) return "0s";
  std::string out;
  if (seconds >= 3600) out += std::to_string(seconds / 3600) + "h";
  if (seconds >= 60) out += std::to_string(seconds / 60 % 60) + "m";
  return out + std::to_string(seconds % 60) + "s";
}

}  // namespace

PullOutput::Mode PullOutput::ModeFor(bool quiet, int fd) {
  if (quiet) return Mode::kQuiet;
  return ::isatty(fd) ? Mode::kTerminal : Mode::kPlain;
}

void PullOutput::Message(const std::string& line) {
  if (mode_ == Mode::kQuiet) return;
  MutexLock lock(&mu_);
  lines_.clear();  // docker: progress lines of an earlier block are never redrawn
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

void PullOutput::LayerStatus(const std::string& id, const std::string& status) {
  if (mode_ == Mode::kQuiet) return;
  MutexLock lock(&mu_);
  if (mode_ == Mode::kPlain) {
    std::fprintf(out_, "%s: %s\n", id.c_str(), status.c_str());
  } else {
    // docker draws a status as a progress of zero bytes: "<status> " and nothing after.
    DrawLineLocked(id, id + ": " + status + " ");
  }
  std::fflush(out_);
}

void PullOutput::LayerProgress(const std::string& id, const std::string& action, uint64_t current,
                               uint64_t total, int64_t elapsed_ms) {
  if (mode_ != Mode::kTerminal) return;
  MutexLock lock(&mu_);
  std::string text = ProgressText(current, total, elapsed_ms, TerminalWidth(out_));
  DrawLineLocked(id, id + ": " + action + " " + text);
  std::fflush(out_);
}

void PullOutput::DrawLineLocked(const std::string& id, const std::string& text) {
  auto it = lines_.find(id);
  size_t line;
  if (it == lines_.end()) {
    line = lines_.size();
    lines_[id] = line;
    std::fputs("\n", out_);
  } else {
    line = it->second;
  }
  // The cursor rests on the line below the block; go up to the id's line and back.
  size_t diff = lines_.size() - line;
  if (diff > 0) std::fprintf(out_, "\x1b[%zuA", diff);
  std::fputs("\x1b[2K\r", out_);
  std::fprintf(out_, "%s\r", text.c_str());
  if (diff > 0) std::fprintf(out_, "\x1b[%zuB", diff);
}

std::string HumanSize(double bytes) {
  static const char* const kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
  size_t i = 0;
  while (bytes >= 1000.0 && i + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    bytes /= 1000.0;
    ++i;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4g%s", bytes, kUnits[i]);
  return buf;
}

std::string ProgressText(uint64_t current, uint64_t total, int64_t elapsed_ms, int width) {
  if (current == 0 && total == 0) return "";
  if (total == 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%8s", HumanSize(static_cast<double>(current)).c_str());
    return buf;
  }
  int percentage = static_cast<int>(static_cast<double>(current) / total * 100) / 2;
  percentage = std::min(percentage, 50);
  std::string bar;
  if (width > 110) {
    bar = "[" + std::string(static_cast<size_t>(percentage), '=') + ">" +
          std::string(static_cast<size_t>(50 - percentage), ' ') + "] ";
  }
  char numbers[96];
  std::string now = HumanSize(static_cast<double>(current));
  if (current > total) {
    std::snprintf(numbers, sizeof numbers, "%8s", now.c_str());
  } else {
    std::snprintf(numbers, sizeof numbers, "%8s/%s", now.c_str(),
                  HumanSize(static_cast<double>(total)).c_str());
  }
  std::string left;
  if (current > 0 && elapsed_ms > 0 && percentage < 50 && width > 50) {
    double ms_per_byte = static_cast<double>(elapsed_ms) / static_cast<double>(current);
    auto seconds = static_cast<int64_t>(ms_per_byte * static_cast<double>(total - current) / 1000);
    left = " " + GoDuration(seconds);
  }
  return bar + numbers + left;
}

}  // namespace imgfs::cli
