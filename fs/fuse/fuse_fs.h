// The FUSE edge of imgfs: serves a Tree and its ContentReader through libfuse3's low-level API.
//
// This is the only code that speaks FUSE or errno. Each request is unpacked, answered by the
// tree or the reader, its Status mapped to an errno (kNotFound -> ENOENT, kInvalidArgument ->
// EINVAL, kUnsupported -> ENOTSUP; whatever comes from fetching or verifying bytes -> EIO),
// and replied to exactly once. The mount is read-only ("ro", and write opens or any write
// request get EROFS) and lets the kernel cache hard: the image is immutable, so entries,
// attributes, negative lookups, symlinks and page cache are kept for a long time, readdirplus
// is always used and readahead is as large as the kernel allows. "default_permissions" makes
// the kernel enforce the image's modes and owners.
//
// Thread-safety: ServeFuse runs libfuse's multithreaded loop; `tree` and `reader` are used
// from its worker threads at once (both are safe for that). They must outlive the call.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "fs/tree/content_reader.h"
#include "fs/tree/tree.h"

namespace imgfs::fs {

struct FuseOptions {
  std::string mountpoint;
  // Extra -o mount options passed through as given, e.g. "allow_other".
  std::vector<std::string> fuse_args;
  bool debug = false;  // libfuse's request trace on stderr
  // Shown as the mount's source in /proc/mounts, e.g. "imgfs:docker.io/library/alpine:latest".
  std::string fsname;
  // When set, a getxattr of kStatsXattr on the mount's root answers with what this returns
  // (JSON, for `imgfs stats`). The name is never listed, so the tree stays as in the image.
  std::function<std::string()> stats;
};

inline constexpr const char* kStatsXattr = "user.imgfs.stats";

// The mount's readahead window (the kernel starts FUSE at 128 KiB), set through sysfs where the
// daemon may (root). A sequential read then keeps many 1 MiB requests in flight, which the
// loop's threads serve in parallel; NFS sizes its window the same way (15 x rsize).
inline constexpr int kMountReadaheadKb = 16384;

// Mounts `tree` at options.mountpoint, calls `on_ready` once the kernel mount exists (the
// CLI then tells its parent process it may exit), serves requests until the filesystem is
// unmounted or the process gets SIGINT/SIGTERM/SIGHUP, then unmounts and returns.
// Errors: kInvalidArgument for options libfuse rejects, kIoError when the mount fails
// (mountpoint missing, no /dev/fuse, no permission) or the loop ends on an error.
Status ServeFuse(const Tree& tree, ContentReader& reader, const FuseOptions& options,
                 const std::function<void()>& on_ready);

}  // namespace imgfs::fs
