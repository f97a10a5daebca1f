// What the FUSE edge's files share (not for use outside fs/fuse): the per-mount state every
// callback reaches through fuse_req_userdata, and Request/Serve, which keep each callback's
// counters and timing and guarantee it exactly one reply; and the replies, shims and write
// refusals the image mount's callbacks (fuse_ops.cc) share with the layer store's (store_fs.cc).
// fuse_fs.cc and fuse_session.h hold the session: mount options, mounting, the loop.
//
// Thread-safety: the Mount is shared by libfuse's worker threads; its counters are atomic, its
// tree and reader safe for concurrent use. A Request belongs to the thread serving it.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/status.h"
#include "fs/fuse/passthrough.h"
#include "fs/tree/content_reader.h"
#include "fs/tree/tree.h"

namespace imgfs::fs::internal {

// The image never changes under a mount, so the kernel may keep what it learns "forever".
inline constexpr double kCacheTimeout = 1e6;
inline constexpr uint32_t kBlockSize = 4096;

enum class Op : uint8_t {
  kLookup,
  kGetattr,
  kReadlink,
  kOpen,
  kRead,
  kRelease,
  kOpendir,
  kReaddir,
  kReaddirplus,
  kReleasedir,
  kStatfs,
  kGetxattr,
  kListxattr,
  kAccess,
  kWrite,
  kCount
};
inline constexpr std::array<const char*, static_cast<size_t>(Op::kCount)> kOpNames = {
    "lookup",  "getattr",  "readlink",  "open",        "read",
    "release", "opendir",  "readdir",   "readdirplus", "releasedir",
    "statfs",  "getxattr", "listxattr", "access",      "write-attempt"};

struct OpCounters {
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> nanos{0};
};

// What every callback reaches through fuse_req_userdata.
struct Mount {
  const Tree& tree;
  ContentReader& reader;
  std::function<std::string()> stats;
  std::array<OpCounters, static_cast<size_t>(Op::kCount)> ops;
  Passthrough passthrough;  // large files served by the kernel from their decoded copies
};

inline int ToErrno(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
      return 0;
    case Code::kNotFound:
      return ENOENT;
    case Code::kInvalidArgument:
      return EINVAL;
    case Code::kUnsupported:
      return ENOTSUP;
    default:
      // Fetch, verification, decoding, disk and internal failures: the kernel's word for
      // "the bytes could not be had" is EIO.
      return EIO;
  }
}

// What stat(2) shows of a tree inode.
inline struct stat ToStat(const Tree::Attr& a) {
  struct stat st;
  std::memset(&st, 0, sizeof(st));
  st.st_ino = a.ino;
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_size = static_cast<off_t>(a.size);
  st.st_rdev = a.rdev;
  st.st_blksize = kBlockSize;
  st.st_blocks = static_cast<blkcnt_t>((a.size + 511) / 512);
  st.st_mtim.tv_sec = a.mtime_sec;
  st.st_mtim.tv_nsec = a.mtime_nsec;
  st.st_atim = st.st_mtim;
  st.st_ctim = st.st_mtim;
  return st;
}

// One request from arrival to reply: keeps the counters and timing (so callbacks do not), and
// guarantees exactly one reply: a callback that leaves without replying (a bug, or an
// exception) answers EIO here.
class Request {
 public:
  Request(fuse_req_t req, Op op)
      : req_(req),
        op_(op),
        mount_(static_cast<Mount*>(fuse_req_userdata(req))),
        start_(std::chrono::steady_clock::now()) {}
  ~Request() {
    if (!replied_) Error(EIO);
    OpCounters& c = mount_->ops[static_cast<size_t>(op_)];
    c.calls.fetch_add(1, std::memory_order_relaxed);
    if (failed_) c.errors.fetch_add(1, std::memory_order_relaxed);
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::steady_clock::now() - start_)
                  .count();
    c.nanos.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  fuse_req_t req() const { return req_; }
  const Tree& tree() const { return mount_->tree; }
  ContentReader& reader() const { return mount_->reader; }
  Passthrough& passthrough() const { return mount_->passthrough; }
  const std::function<std::string()>& stats() const { return mount_->stats; }

  void Error(int err) {
    failed_ = err != 0;
    Replied(fuse_reply_err(req_, err));
  }
  void Fail(const Status& s) { Error(ToErrno(s)); }
  // Replies `value` to getxattr/listxattr (ReplyXattr below); ERANGE counts as an error.
  void Xattr(size_t size, const std::string& value);
  // Records the reply made by a fuse_reply_* call returning `rc`.
  void Replied(int rc) {
    replied_ = true;
    if (rc != 0) {
      // The kernel gave up on the request (interrupted); nothing more can be sent.
      IMGFS_LOG(kDebug, "fuse " << kOpNames[static_cast<size_t>(op_)]
                                << ": reply failed: " << std::strerror(-rc));
    }
  }

 private:
  fuse_req_t req_;
  Op op_;
  Mount* mount_;
  std::chrono::steady_clock::time_point start_;
  bool replied_ = false;
  bool failed_ = false;
};

// Runs a callback body with its Request; no exception leaves (libfuse is C).
template <typename Body>
void Serve(fuse_req_t req, Op op, Body&& body) noexcept {
  try {
    Request r(req, op);
    try {
      body(r);
    } catch (const std::exception& e) {
      IMGFS_LOG(kError, "fuse " << kOpNames[static_cast<size_t>(op)] << ": " << e.what());
    }
  } catch (...) {
    // Only reachable if logging itself threw; the Request destructor has replied.
  }
}

// ---- What the image mount's callbacks (fuse_ops.cc) and the layer store's (store_fs.cc) share.

// The entry a lookup replies for `st`; the kernel may keep it "forever" (kCacheTimeout).
inline fuse_entry_param ToEntry(const struct stat& st) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.ino = st.st_ino;
  e.generation = 1;
  e.attr = st;
  e.attr_timeout = kCacheTimeout;
  e.entry_timeout = kCacheTimeout;
  return e;
}

// The reply to a lookup of a name an image's tree does not hold: a negative entry the kernel may
// keep as long as a positive one, since the name will never appear.
inline fuse_entry_param NegativeEntry() {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.entry_timeout = kCacheTimeout;
  return e;
}

// True when a getxattr/listxattr buffer of `size` bytes cannot hold `value` (ERANGE); size 0
// only asks how big the value is.
inline bool XattrTooSmall(size_t size, const std::string& value) {
  return size != 0 && size < value.size();
}

// Replies `value` to getxattr or listxattr under their size-probe protocol: to size 0 the
// value's size, to a buffer too small ERANGE, else the value. Returns the fuse_reply_* result.
inline int ReplyXattr(fuse_req_t req, size_t size, const std::string& value) {
  if (size == 0) return fuse_reply_xattr(req, value.size());
  if (XattrTooSmall(size, value)) return fuse_reply_err(req, ERANGE);
  return fuse_reply_buf(req, value.data(), value.size());
}

inline void Request::Xattr(size_t size, const std::string& value) {
  failed_ = XattrTooSmall(size, value);
  Replied(ReplyXattr(req_, size, value));
}

// listxattr's value: the names, each ended by a NUL.
inline std::string XattrNameList(const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& n : names) {
    list += n;
    list.push_back('\0');
  }
  return list;
}

// forget and forget_multi: inodes live as long as their tree (or store), so nothing is dropped.
inline void OnForget(fuse_req_t req, fuse_ino_t /*ino*/, uint64_t /*nlookup*/) noexcept {
  fuse_reply_none(req);
}
inline void OnForgetMulti(fuse_req_t req, size_t /*count*/,
                          fuse_forget_data* /*forgets*/) noexcept {
  fuse_reply_none(req);
}

// Points every op that would change a filesystem at Refusal::Refuse, instantiated with the
// arguments libfuse passes that op (Refusal::Refuse replies EROFS, and may count it). A
// filesystem that gives some of them a meaning sets those after this.
template <typename Refusal>
void SetWriteOps(fuse_lowlevel_ops* ops) {
  ops->setattr = Refusal::template Refuse<fuse_ino_t, struct stat*, int, fuse_file_info*>;
  ops->mknod = Refusal::template Refuse<fuse_ino_t, const char*, mode_t, dev_t>;
  ops->mkdir = Refusal::template Refuse<fuse_ino_t, const char*, mode_t>;
  ops->unlink = Refusal::template Refuse<fuse_ino_t, const char*>;
  ops->rmdir = Refusal::template Refuse<fuse_ino_t, const char*>;
  ops->symlink = Refusal::template Refuse<const char*, fuse_ino_t, const char*>;
  ops->rename =
      Refusal::template Refuse<fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned int>;
  ops->link = Refusal::template Refuse<fuse_ino_t, fuse_ino_t, const char*>;
  ops->write = Refusal::template Refuse<fuse_ino_t, const char*, size_t, off_t, fuse_file_info*>;
  ops->create = Refusal::template Refuse<fuse_ino_t, const char*, mode_t, fuse_file_info*>;
  ops->setxattr = Refusal::template Refuse<fuse_ino_t, const char*, const char*, size_t, int>;
  ops->removexattr = Refusal::template Refuse<fuse_ino_t, const char*>;
}

// libfuse's callbacks (fuse_ops.cc).
fuse_lowlevel_ops MakeOps();

}  // namespace imgfs::fs::internal
