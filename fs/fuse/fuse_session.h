// Running a low-level FUSE session from mount to unmount: what the image mount (fuse_fs.h) and
// the layer store (store_fs.h) share besides fuse_request.h. Internal to fs/fuse (it exposes
// libfuse's types).
//
// Thread-safety: free functions; RunFuseSession blocks its caller while libfuse's worker
// threads call `ops` with `userdata`.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

#include <functional>
#include <string>

#include "base/status.h"
#include "fs/fuse/fuse_fs.h"

namespace imgfs::fs {

// fuse_opt splits -o values at commas; a literal comma or backslash must be escaped.
std::string EscapeOption(const std::string& value);

// Mounts a session of `ops` (userdata `userdata`) at options.mountpoint with
// "default_permissions,subtype=imgfs,fsname=..." + the user's -o list + `forced_options`
// (appended last, so no user option overrides them; e.g. ",ro"), calls `on_ready` once the
// kernel mount exists, serves until unmounted or SIGINT/SIGTERM/SIGHUP, then unmounts.
// `io`, when given, takes the session's reads and writes of /dev/fuse once mounted
// (fuse_session_custom_io; passthrough.h). Errors as ServeFuse's.
Status RunFuseSession(const fuse_lowlevel_ops& ops, void* userdata, const FuseOptions& options,
                      const std::string& forced_options, const std::function<void()>& on_ready,
                      const fuse_custom_io* io = nullptr);

}  // namespace imgfs::fs
