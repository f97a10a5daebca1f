#define FUSE_USE_VERSION 312
#include "fs/fuse/fuse_fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "base/log.h"
#include "fs/fuse/fuse_request.h"
#include "fs/fuse/fuse_session.h"

namespace imgfs::fs {
namespace {

using internal::kOpNames;
using internal::MakeOps;
using internal::Mount;

void LogOpStats(const Mount& mount) {
  for (size_t i = 0; i < mount.ops.size(); ++i) {
    uint64_t calls = mount.ops[i].calls.load();
    if (calls == 0) continue;
    IMGFS_LOG(kInfo, "fuse " << kOpNames[i] << ": " << calls << " calls, "
                             << mount.ops[i].errors.load() << " errors, "
                             << mount.ops[i].nanos.load() / calls / 1000 << " us average");
  }
}

// The session's I/O goes through the mount's Passthrough (its userdata is the Mount).
ssize_t HookRead(int fd, void* buf, size_t len, void* userdata) {
  return static_cast<Mount*>(userdata)->passthrough.Read(fd, buf, len);
}
ssize_t HookWritev(int fd, struct iovec* iov, int count, void* userdata) {
  return static_cast<Mount*>(userdata)->passthrough.Writev(fd, iov, count);
}

}  // namespace

Status ServeFuse(const Tree& tree, ContentReader& reader, const FuseOptions& options,
                 const std::function<void()>& on_ready) {
  Mount mount{tree, reader, options.stats, {}, {}};
  const fuse_lowlevel_ops ops = MakeOps();
  fuse_custom_io io;
  std::memset(&io, 0, sizeof(io));
  io.read = HookRead;
  io.writev = HookWritev;
  // ",ro" last, so that no user option can make the mount writable.
  Status s = RunFuseSession(ops, &mount, options, ",ro", on_ready, &io);
  LogOpStats(mount);
  return s;
}

}  // namespace imgfs::fs
