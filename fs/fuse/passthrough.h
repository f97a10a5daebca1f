// FUSE passthrough for the image mount: an open file served by the kernel from a file on local
// disk (the decoded copy of cache/decoded_files.h), so that its reads never reach the daemon
// and its cached pages are the local file's own.
//
// The kernel has it since Linux 6.9 (CONFIG_FUSE_PASSTHROUGH); libfuse has it since 3.16, and
// Debian 12 ships 3.14. The protocol is small, so imgfs speaks it itself through libfuse's
// custom I/O (fuse_session_custom_io, the session's reads and writes of /dev/fuse):
//   - INIT: when the kernel's request offers FUSE_PASSTHROUGH (flags2), the reply libfuse
//     writes is given FUSE_PASSTHROUGH and max_stack_depth 1 (the backing files are on a
//     filesystem that stacks on nothing; overlayfs may still stack on the mount);
//   - a backing file is registered with ioctl(FUSE_DEV_IOC_BACKING_OPEN) on /dev/fuse, which
//     answers an id (root only: the kernel asks for CAP_SYS_ADMIN);
//   - OPEN: the reply carries FOPEN_PASSTHROUGH and the id in fuse_open_out's last field,
//     which libfuse 3.14 calls padding and leaves zero.
// The kernel then holds the file; the id is closed (FUSE_DEV_IOC_BACKING_CLOSE) when the last
// open of the inode is released.
//
// The kernel's rule: while an inode is open through the page cache, it cannot be opened
// passthrough, and while it is open passthrough, every open must be, with the same backing
// file (else the open fails with EIO). BeginOpen/EndOpen keep that per inode.
//
// Where anything is missing (an older kernel, no root, a cache on a filesystem that stacks on
// another, such as overlayfs), the mount works as before: the first refusal turns passthrough
// off for the mount, and is logged once.
//
// Thread-safety: everything may be called from libfuse's worker threads at once. The I/O hooks
// rely on libfuse replying to a request on the thread that read it (its loops do).
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <unordered_map>

#include "base/mutex.h"
#include "base/status.h"
#include "base/thread_annotations.h"

namespace imgfs::fs::internal {

class Passthrough {
 public:
  // The session's I/O: what the hooks given to fuse_session_custom_io call.
  ssize_t Read(int fd, void* buf, size_t len);
  ssize_t Writev(int fd, struct iovec* iov, int count);

  // True once the INIT reply asked for passthrough and no registration failed since.
  bool available() const { return asked_.load() && !refused_.load(); }

  // How an open of inode `ino` is served: a backing id (mark the reply with MarkNextOpen), or
  // 0 for the page cache. `open_decoded` opens the file's decoded copy (a descriptor the call
  // closes, or an error: then 0); it is called only when no open of the inode is live.
  uint32_t BeginOpen(uint64_t ino, const std::function<Result<int>()>& open_decoded)
      EXCLUDES(mu_);
  // The release of an open BeginOpen answered `id` for.
  void EndOpen(uint64_t ino, uint32_t id) EXCLUDES(mu_);

  // The open reply this thread sends next (fuse_reply_open) serves the file from backing `id`.
  static void MarkNextOpen(uint32_t id);

 private:
  struct InodeOpens {
    uint32_t cached = 0;       // opens served through the page cache
    uint32_t passthrough = 0;  // opens served from `backing`
    uint32_t backing = 0;
  };
  // Registers the descriptor with the kernel; 0 when refused (passthrough is then off).
  uint32_t OpenBacking(int fd);
  void CloseBacking(uint32_t id);

  std::atomic<int> fd_{-1};  // /dev/fuse, as the hooks see it
  std::atomic<bool> offered_{false};
  std::atomic<bool> asked_{false};
  std::atomic<bool> refused_{false};

  Mutex mu_;
  std::unordered_map<uint64_t, InodeOpens> opens_ GUARDED_BY(mu_);
};

}  // namespace imgfs::fs::internal
