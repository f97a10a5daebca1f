// RunInBackground: how a background mount starts, as a daemon does. The command forks; the
// child leaves the terminal (setsid, stdin and stdout on /dev/null) and runs `serve`; the
// parent waits on a pipe and returns only once the child says it is ready (exit status 0) or
// has failed (exit status 1, the child's error printed as "imgfs: <message>").
//
// Until ready, the child ends (SIGTERM) with the parent: an interrupted or killed command takes
// its half-started daemon with it. `serve` calls `ready()` at most once, when the service can
// be used. From then on nobody
// reads the child's stderr, so it is sent to `log_file` (appended; /dev/null when it cannot be
// opened). A failure after ready is logged there, naming `what`.
//
// REQUIRES: called before anything opens LMDB, starts threads or initialises libcurl; none of
// them survive fork(). Returns in the parent only; the child ends with _exit.
#pragma once

#include <functional>
#include <string>

#include "base/status.h"

namespace imgfs::cli {

using ServeFunction = std::function<Status(const std::function<void()>& ready)>;

int RunInBackground(const std::string& what, const std::string& log_file,
                    const ServeFunction& serve);

// `serve` in this process when `foreground` (SIGINT, SIGTERM and SIGHUP end it, even when
// started with them ignored, as a shell's background job is: nothing outlives it before it
// serves, and FUSE installs its own handlers once it does), else RunInBackground. Returns the
// exit status, printing the error of a foreground failure. Either way the serving process's
// malloc maps large blocks on their own, so that freed units go back (daemon.cc).
int RunServing(bool foreground, const std::string& what, const std::string& log_file,
               const ServeFunction& serve);

}  // namespace imgfs::cli
