// PullOutput: what `imgfs pull` prints, in the shape the docker CLI gives `docker pull`'s
// progress stream (docker/cli's jsonmessage), so that people and scripts that read docker's
// output read imgfs's the same way.
//
//   kPlain     not a terminal: one line per event ("<id>: Pull complete"); progress updates
//              ("Downloading" with bytes) are not printed at all, as docker drops them.
//   kTerminal  each layer keeps one line, redrawn in place (cursor up, erase line, cursor
//              down) with docker's progress bar; a line without an id ends the block, so the
//              next block (pull -a's next tag) starts below it.
//   kQuiet     nothing (pull -q prints only the final reference itself).
//
// Thread-safety: every method may be called from any thread; each event is written whole.
// Write errors on the output are ignored, as docker ignores them.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

#include "base/mutex.h"

namespace imgfs::cli {

class PullOutput {
 public:
  enum class Mode { kQuiet, kPlain, kTerminal };

  // kQuiet when `quiet`, else kTerminal when `fd` is a terminal, else kPlain.
  static Mode ModeFor(bool quiet, int fd);

  explicit PullOutput(Mode mode, std::FILE* out = stdout) : mode_(mode), out_(out) {}

  Mode mode() const { return mode_; }

  // A line of its own ("latest: Pulling from library/alpine", "Digest: sha256:...").
  void Message(const std::string& line);
  // "<id>: <status>" ("Pulling fs layer", "Pull complete"): a new line for a new id, else
  // that id's line redrawn on a terminal.
  void LayerStatus(const std::string& id, const std::string& status);
  // "<id>: <action> [==>   ]  1.2MB/3.4MB 2s" on a terminal; nothing otherwise.
  void LayerProgress(const std::string& id, const std::string& action, uint64_t current,
                     uint64_t total, int64_t elapsed_ms);

 private:
  // Writes `text` on the line of `id` (docker's cursor dance).
  void DrawLineLocked(const std::string& id, const std::string& text) REQUIRES(mu_);

  // Constant after construction.
  const Mode mode_;
  std::FILE* const out_;

  // State below is protected by mu_, which also keeps the lines written whole.
  Mutex mu_;
  std::map<std::string, size_t> lines_ GUARDED_BY(mu_);  // id -> line in the current block
};

// docker's units.HumanSize: decimal units, four significant digits ("32.77kB", "3.408MB").
std::string HumanSize(double bytes);

// docker's JSONProgress.String() for a terminal `width` columns wide: a 50-step bar when
// wider than 110 columns, "current/total", and the time left when wider than 50.
std::string ProgressText(uint64_t current, uint64_t total, int64_t elapsed_ms, int width);

}  // namespace imgfs::cli
