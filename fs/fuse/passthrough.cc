#include "fs/fuse/passthrough.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace imgfs::fs::internal {
namespace {

// The kernel's protocol (include/uapi/linux/fuse.h, 7.40 and later), which Debian 12's own
// headers (Linux 6.1, libfuse 3.14) predate. Little-endian, as the host.
constexpr uint32_t kOpInit = 26;
constexpr uint32_t kOpOpen = 14;
constexpr uint32_t kInitExt = 1u << 30;          // FUSE_INIT_EXT, in flags
constexpr uint32_t kPassthroughFlag2 = 1u << 5;  // FUSE_PASSTHROUGH (1 << 37), in flags2
constexpr uint32_t kWritebackCache = 1u << 16;   // FUSE_WRITEBACK_CACHE, excludes passthrough
constexpr uint32_t kOpenPassthrough = 1u << 7;   // FOPEN_PASSTHROUGH
// The only open flags the kernel takes with FOPEN_PASSTHROUGH (FOPEN_PASSTHROUGH_MASK: direct
// I/O, no flush, parallel direct writes); any other, FOPEN_KEEP_CACHE among them, fails the
// open with EIO. The page cache is the backing file's anyway.
constexpr uint32_t kPassthroughOpenFlags = (1u << 0) | (1u << 5) | (1u << 6) | kOpenPassthrough;
constexpr uint32_t kMaxStackDepth = 1;

struct InHeader {  // fuse_in_header
  uint32_t len, opcode;
  uint64_t unique, nodeid;
  uint32_t uid, gid, pid;
  uint16_t total_extlen, padding;
};
static_assert(sizeof(InHeader) == 40);

struct InitIn {  // fuse_init_in, as far as flags2
  uint32_t major, minor, max_readahead, flags, flags2;
};

struct OutHeader {  // fuse_out_header
  uint32_t len;
  int32_t error;
  uint64_t unique;
};
static_assert(sizeof(OutHeader) == 16);

struct InitOut {  // fuse_init_out
  uint32_t major, minor, max_readahead, flags;
  uint16_t max_background, congestion_threshold;
  uint32_t max_write, time_gran;
  uint16_t max_pages, map_alignment;
  uint32_t flags2, max_stack_depth;
  uint16_t request_timeout, unused[11];
};
static_assert(sizeof(InitOut) == 64);

struct OpenOut {  // fuse_open_out
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;
};
static_assert(sizeof(OpenOut) == 16);

struct BackingMap {  // fuse_backing_map
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
constexpr unsigned long kBackingOpen = _IOW(229, 1, BackingMap);
constexpr unsigned long kBackingClose = _IOW(229, 2, uint32_t);

// The request this thread read last (libfuse replies on the thread that read), and the backing
// id its open reply is to carry.
thread_local uint32_t t_opcode = 0;
thread_local uint64_t t_unique = 0;
thread_local uint32_t t_next_open = 0;

}  // namespace

ssize_t Passthrough::Read(int fd, void* buf, size_t len) {
  ssize_t n = ::read(fd, buf, len);
  if (n < static_cast<ssize_t>(sizeof(InHeader))) return n;  // errno kept for libfuse
  fd_.store(fd, std::memory_order_relaxed);
  InHeader h;
  std::memcpy(&h, buf, sizeof(h));
  t_opcode = h.opcode;
  t_unique = h.unique;
  t_next_open = 0;  // a mark never outlives the request it was made for
  if (h.opcode == kOpInit && n >= static_cast<ssize_t>(sizeof(InHeader) + sizeof(InitIn))) {
    InitIn in;
    std::memcpy(&in, static_cast<const char*>(buf) + sizeof(InHeader), sizeof(in));
    offered_.store((in.flags & kInitExt) && (in.flags2 & kPassthroughFlag2));
  }
  return n;
}

ssize_t Passthrough::Writev(int fd, struct iovec* iov, int count) {
  const uint32_t next_open = t_next_open;
  t_next_open = 0;  // only ever for the reply that follows MarkNextOpen
  OutHeader h;
  if (count != 2 || iov[0].iov_len != sizeof(h)) return ::writev(fd, iov, count);
  std::memcpy(&h, iov[0].iov_base, sizeof(h));
  if (h.error != 0 || h.unique != t_unique) return ::writev(fd, iov, count);

  if (t_opcode == kOpInit && offered_.load() && iov[1].iov_len == sizeof(InitOut)) {
    InitOut out;
    std::memcpy(&out, iov[1].iov_base, sizeof(out));
    if (out.flags & kWritebackCache) return ::writev(fd, iov, count);
    out.flags |= kInitExt;
    out.flags2 |= kPassthroughFlag2;
    out.max_stack_depth = kMaxStackDepth;
    iovec patched[2] = {iov[0], {&out, sizeof(out)}};
    // Before the write: the kernel may send (and another thread read) the first open as soon
    // as it has the reply.
    asked_.store(true);
    ssize_t n = ::writev(fd, patched, 2);
    if (n < 0) asked_.store(false);
    return n;
  }
  if (t_opcode == kOpOpen && next_open != 0 && iov[1].iov_len == sizeof(OpenOut)) {
    OpenOut out;
    std::memcpy(&out, iov[1].iov_base, sizeof(out));
    out.open_flags = (out.open_flags & kPassthroughOpenFlags) | kOpenPassthrough;
    out.backing_id = static_cast<int32_t>(next_open);
    iovec patched[2] = {iov[0], {&out, sizeof(out)}};
    return ::writev(fd, patched, 2);
  }
  return ::writev(fd, iov, count);
}

void Passthrough::MarkNextOpen(uint32_t id) { t_next_open = id; }

uint32_t Passthrough::OpenBacking(int file) {
  BackingMap map{file, 0, 0};
  int id = ::ioctl(fd_.load(), kBackingOpen, &map);
  if (id > 0) return static_cast<uint32_t>(id);
  int err = errno;
  if (!refused_.exchange(true)) {
    IMGFS_LOG(kWarning, "FUSE passthrough is off for this mount: the kernel refused a backing "
                            << "file (" << std::strerror(err)
                            << (err == EPERM ? "; it needs root" : "")
                            << (err == ELOOP ? "; the cache is on a stacked filesystem" : "")
                            << "); reads go through the daemon");
  }
  return 0;
}

void Passthrough::CloseBacking(uint32_t id) {
  if (::ioctl(fd_.load(), kBackingClose, &id) != 0) {
    IMGFS_LOG(kDebug, "FUSE passthrough: closing backing " << id << ": " << std::strerror(errno));
  }
}

uint32_t Passthrough::BeginOpen(uint64_t ino, const std::function<Result<int>()>& open_decoded) {
  MutexLock lock(&mu_);
  InodeOpens& o = opens_[ino];
  if (o.passthrough > 0) {
    ++o.passthrough;
    return o.backing;
  }
  if (o.cached == 0 && available()) {
    Result<int> file = open_decoded();
    if (file.ok()) {
      uint32_t id = OpenBacking(*file);
      ::close(*file);
      if (id != 0) {
        o.backing = id;
        o.passthrough = 1;
        return id;
      }
    }
  }
  ++o.cached;
  return 0;
}

void Passthrough::EndOpen(uint64_t ino, uint32_t id) {
  MutexLock lock(&mu_);
  auto it = opens_.find(ino);
  if (it == opens_.end()) return;
  InodeOpens& o = it->second;
  if (id != 0 && o.passthrough > 0 && o.backing == id) {
    if (--o.passthrough == 0) CloseBacking(id);
  } else if (id == 0 && o.cached > 0) {
    --o.cached;
  }
  if (o.passthrough == 0 && o.cached == 0) opens_.erase(it);
}

}  // namespace imgfs::fs::internal
