// Running outside programs from tests: one-shot commands with captured output, and background
// servers that are always stopped.
//
// Commands are run with fork/exec and an argv vector, never through a shell, so paths and
// references with odd characters cannot inject anything. Output goes to anonymous memory files
// rather than pipes: a program that daemonizes (imgfs mount) may leave a child holding the
// descriptors, and a pipe reader would wait for that child forever, while here RunCommand() returns
// as soon as the direct child exits.
//
// Thread-safety: RunCommand() may be called from several threads. A BackgroundProcess is owned by
// one thread. Failure: a program that cannot be started gives exit_code 127 and the reason in err.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace imgfs::test {

struct RunOptions {
  // Variables set (or overridden) in the child's environment.
  std::vector<std::pair<std::string, std::string>> env;
  // Variables removed from the child's environment.
  std::vector<std::string> unset_env;
  std::string stdin_data;  // empty: stdin is /dev/null
  std::string cwd;         // empty: the test's cwd
  // The child is killed (SIGKILL) after this, times TimeScale() (tests/support/sanitizer.h).
  int timeout_seconds = 180;
};

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal
  int term_signal = 0;
  bool timed_out = false;
  std::string out;
  std::string err;
  std::string command;  // the argv, joined, for messages

  bool ok() const { return exit_code == 0; }
  // "`cmd` exited 1\nstderr: ...\nstdout: ..." for assertion messages.
  std::string Describe() const;
};

RunResult RunCommand(const std::vector<std::string>& argv, const RunOptions& options = {});

// Polls `done` every 20 ms until it holds or `seconds` (times TimeScale(), tests/support/
// sanitizer.h) pass; whether it held. For waiting on
// work another process does, instead of sleeping a fixed time.
bool WaitUntil(const std::function<bool()>& done, double seconds);

// RunCommand() that turns a non-zero exit into a Status carrying Describe().
Status RunOk(const std::vector<std::string>& argv, const RunOptions& options = {});

// Runs `curl -sS --max-time max_time_s ARGS...`; its stdout (what -w printed), or
// kUnavailable describing the failed run.
Result<std::string> RunCurl(const std::vector<std::string>& args, int max_time_s);

// argv joined with spaces, arguments containing spaces quoted; for messages only.
std::string JoinArgs(const std::vector<std::string>& argv);

// True when `path` names an executable file.
bool IsExecutable(const std::string& path);

// `s` in lower case (ASCII), for matching program output whatever its capitals.
std::string Lower(std::string s);

// A program running in the background in its own process group. Stopping it (explicitly or
// in the destructor) sends SIGTERM to the group, waits up to a grace period, then SIGKILLs,
// so helpers it started go with it.
class BackgroundProcess {
 public:
  BackgroundProcess() = default;
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  // stdout and stderr are appended to the given files (created if needed).
  // REQUIRES: !running()
  Status Start(const std::vector<std::string>& argv, const std::string& stdout_path,
               const std::string& stderr_path,
               const std::vector<std::pair<std::string, std::string>>& env = {});
  void Stop(int grace_ms = 3000);
  // False once the program has exited (reaps it).
  bool running();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

}  // namespace imgfs::test
