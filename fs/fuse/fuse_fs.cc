#define FUSE_USE_VERSION 312
#include "fs/fuse/fuse_fs.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include "base/log.h"

namespace imgfs::fs {
namespace {

// The image never changes under a mount, so the kernel may keep what it learns "forever".
constexpr double kCacheTimeout = 1e6;
constexpr uint32_t kBlockSize = 4096;

enum class Op : uint8_t {
  kLookup, kGetattr, kReadlink, kOpen, kRead, kRelease, kOpendir, kReaddir, kReaddirplus,
  kReleasedir, kStatfs, kGetxattr, kListxattr, kAccess, kWrite, kCount
};
constexpr std::array<const char*, static_cast<size_t>(Op::kCount)> kOpNames = {
    "lookup", "getattr", "readlink", "open", "read", "release", "opendir", "readdir",
    "readdirplus", "releasedir", "statfs", "getxattr", "listxattr", "access", "write-attempt"};

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
};

int ToErrno(const Status& s) {
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
  const std::function<std::string()>& stats() const { return mount_->stats; }

  void Error(int err) {
    failed_ = err != 0;
    Replied(fuse_reply_err(req_, err));
  }
  void Fail(const Status& s) { Error(ToErrno(s)); }
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

struct stat ToStat(const Tree::Attr& a) {
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

fuse_entry_param ToEntry(const Tree::Attr& a) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.ino = a.ino;
  e.generation = 1;
  e.attr = ToStat(a);
  e.attr_timeout = kCacheTimeout;
  e.entry_timeout = kCacheTimeout;
  return e;
}

// Replies to an xattr request with the size-probe protocol: size 0 asks how big, a buffer too
// small is ERANGE.
void ReplyXattr(Request& r, size_t size, const std::string& value) {
  if (size == 0) {
    r.Replied(fuse_reply_xattr(r.req(), value.size()));
  } else if (size < value.size()) {
    r.Error(ERANGE);
  } else {
    r.Replied(fuse_reply_buf(r.req(), value.data(), value.size()));
  }
}

void OnInit(void* /*userdata*/, fuse_conn_info* conn) noexcept {
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  if (conn->capable & FUSE_CAP_READDIRPLUS) {
    conn->want |= FUSE_CAP_READDIRPLUS;
    // Always plus: attributes never go stale, so `ls -l` should cost one round trip.
    conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  }
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  // libfuse starts max_readahead at the kernel's maximum; make sure nothing shrank it.
  conn->max_readahead = UINT32_MAX;
  if (conn->max_background < 64) conn->max_background = 64;
}

void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
  Serve(req, Op::kLookup, [&](Request& r) {
    Result<Tree::Attr> attr = r.tree().Lookup(parent, name);
    if (attr.status().IsNotFound()) {
      // A negative entry the kernel may cache: the name will never appear.
      fuse_entry_param e;
      std::memset(&e, 0, sizeof(e));
      e.entry_timeout = kCacheTimeout;
      return r.Replied(fuse_reply_entry(req, &e));
    }
    if (!attr.ok()) return r.Fail(attr.status());
    fuse_entry_param e = ToEntry(*attr);
    r.Replied(fuse_reply_entry(req, &e));
  });
}

void OnForget(fuse_req_t req, fuse_ino_t /*ino*/, uint64_t /*nlookup*/) noexcept {
  fuse_reply_none(req);  // inodes live as long as the tree
}

void OnForgetMulti(fuse_req_t req, size_t /*count*/, fuse_forget_data* /*forgets*/) noexcept {
  fuse_reply_none(req);
}

void OnGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) noexcept {
  Serve(req, Op::kGetattr, [&](Request& r) {
    Result<Tree::Attr> attr = r.tree().GetAttr(ino);
    if (!attr.ok()) return r.Fail(attr.status());
    struct stat st = ToStat(*attr);
    r.Replied(fuse_reply_attr(req, &st, kCacheTimeout));
  });
}

void OnReadlink(fuse_req_t req, fuse_ino_t ino) noexcept {
  Serve(req, Op::kReadlink, [&](Request& r) {
    Result<std::string> target = r.tree().ReadLink(ino);
    if (!target.ok()) return r.Fail(target.status());
    r.Replied(fuse_reply_readlink(req, target->c_str()));
  });
}

void OnOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  Serve(req, Op::kOpen, [&](Request& r) {
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) return r.Error(EROFS);
    Result<Tree::Attr> attr = r.tree().GetAttr(ino);
    if (!attr.ok()) return r.Fail(attr.status());
    if (S_ISDIR(attr->mode)) return r.Error(EISDIR);
    fi->keep_cache = 1;  // the file's pages stay valid across opens
    r.Replied(fuse_reply_open(req, fi));
  });
}

void OnRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
            fuse_file_info* /*fi*/) noexcept {
  Serve(req, Op::kRead, [&](Request& r) {
    if (off < 0) return r.Error(EINVAL);
    Result<FileSource> file = r.tree().GetFileSource(ino);
    if (!file.ok()) return r.Fail(file.status());
    // One buffer per loop thread: reads are up to max_read (1 MiB) and very frequent.
    thread_local std::unique_ptr<char[]> buffer;
    thread_local size_t buffer_size = 0;
    if (buffer_size < size) {
      buffer.reset(new char[size]);
      buffer_size = size;
    }
    Result<size_t> n = r.reader().Read(*file, static_cast<uint64_t>(off), size, buffer.get());
    if (!n.ok()) return r.Fail(n.status());
    r.Replied(fuse_reply_buf(req, buffer.get(), *n));
  });
}

void OnRelease(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* /*fi*/) noexcept {
  Serve(req, Op::kRelease, [&](Request& r) { r.Error(0); });
}

void OnOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  Serve(req, Op::kOpendir, [&](Request& r) {
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return r.Error(EROFS);
    Result<Tree::Attr> attr = r.tree().GetAttr(ino);
    if (!attr.ok()) return r.Fail(attr.status());
    if (!S_ISDIR(attr->mode)) return r.Error(ENOTDIR);
    fi->keep_cache = 1;
    fi->cache_readdir = 1;
    r.Replied(fuse_reply_open(req, fi));
  });
}

// readdir and readdirplus differ only in how an entry is packed.
void ReadDirInto(Request& r, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  if (off < 0) return r.Error(EINVAL);
  std::unique_ptr<char[]> buf(new char[size]);
  size_t used = 0;
  std::string name;  // the tree's names are not NUL-terminated
  Status s;
  Status walk = r.tree().ReadDir(
      ino, static_cast<uint64_t>(off),
      [&](std::string_view entry_name, const Tree::Attr& attr, uint64_t next) {
        name.assign(entry_name);
        size_t need;
        if (plus) {
          fuse_entry_param e = ToEntry(attr);
          need = fuse_add_direntry_plus(r.req(), buf.get() + used, size - used, name.c_str(), &e,
                                        static_cast<off_t>(next));
        } else {
          struct stat st = ToStat(attr);
          need = fuse_add_direntry(r.req(), buf.get() + used, size - used, name.c_str(), &st,
                                   static_cast<off_t>(next));
        }
        if (need > size - used) {
          // An entry that fits no buffer would end the listing early and hide the rest of the
          // directory: that is an error, never a silent end.
          if (used == 0) {
            s = Status::Internal("directory entry '" + AbbreviateName(name) + "' (" +
                                 std::to_string(name.size()) + " bytes) does not fit a " +
                                 std::to_string(size) + "-byte readdir buffer");
          }
          return false;
        }
        used += need;
        return true;
      });
  if (s.ok()) s = walk;
  if (!s.ok()) {
    IMGFS_LOG(kError, "readdir of inode " << ino << ": " << s.ToString());
    return r.Fail(s);
  }
  r.Replied(fuse_reply_buf(r.req(), buf.get(), used));
}

void OnReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
               fuse_file_info* /*fi*/) noexcept {
  Serve(req, Op::kReaddir, [&](Request& r) { ReadDirInto(r, ino, size, off, false); });
}

void OnReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   fuse_file_info* /*fi*/) noexcept {
  Serve(req, Op::kReaddirplus, [&](Request& r) { ReadDirInto(r, ino, size, off, true); });
}

void OnReleasedir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* /*fi*/) noexcept {
  Serve(req, Op::kReleasedir, [&](Request& r) { r.Error(0); });
}

void OnStatfs(fuse_req_t req, fuse_ino_t /*ino*/) noexcept {
  Serve(req, Op::kStatfs, [&](Request& r) {
    const Tree::Stats& stats = r.tree().stats();
    struct statvfs sv;
    std::memset(&sv, 0, sizeof(sv));
    sv.f_bsize = kBlockSize;
    sv.f_frsize = kBlockSize;
    sv.f_blocks = (stats.total_file_bytes + kBlockSize - 1) / kBlockSize;
    sv.f_files = stats.inodes;
    sv.f_namemax = 255;
    sv.f_flag = ST_RDONLY;
    r.Replied(fuse_reply_statfs(req, &sv));
  });
}

void OnGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) noexcept {
  Serve(req, Op::kGetxattr, [&](Request& r) {
    if (ino == FUSE_ROOT_ID && r.stats() && std::strcmp(name, kStatsXattr) == 0) {
      return ReplyXattr(r, size, r.stats()());
    }
    Result<std::string> value = r.tree().GetXattr(ino, name);
    if (value.status().IsNotFound() && r.tree().GetAttr(ino).ok()) return r.Error(ENODATA);
    if (!value.ok()) return r.Fail(value.status());
    ReplyXattr(r, size, *value);
  });
}

void OnListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) noexcept {
  Serve(req, Op::kListxattr, [&](Request& r) {
    Result<std::vector<std::string>> names = r.tree().ListXattrs(ino);
    if (!names.ok()) return r.Fail(names.status());
    std::string list;
    for (const std::string& n : *names) {
      list += n;
      list.push_back('\0');
    }
    ReplyXattr(r, size, list);
  });
}

void OnAccess(fuse_req_t req, fuse_ino_t ino, int mask) noexcept {
  Serve(req, Op::kAccess, [&](Request& r) {
    if (mask & W_OK) return r.Error(EROFS);
    Result<Tree::Attr> attr = r.tree().GetAttr(ino);
    r.Fail(attr.status());
  });
}

// Every request that would change the filesystem. "ro" already makes the kernel refuse them;
// answering them anyway keeps the filesystem read-only if a mount option is lost.
void OnSetattr(fuse_req_t req, fuse_ino_t, struct stat*, int, fuse_file_info*) noexcept {
  Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
}
void OnMknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) noexcept {
  Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
}
void OnMkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) noexcept {
  Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
}
void OnUnlink(fuse_req_t req, fuse_ino_t, const char*) noexcept {
  Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
}
void OnSymlink(fuse_req_t req, const char*, fuse_ino_t, const char*) noexcept {
  Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
}
void OnRename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*,
              unsigned int) noexcept {
  Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
}
void OnLink(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) noexcept {
  Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
}
void OnWrite(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t, fuse_file_info*) noexcept {
  Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
}
void OnCreate(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) noexcept {
  Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
}
void OnSetxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) noexcept {
  Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
}
void OnRemovexattr(fuse_req_t req, fuse_ino_t, const char*) noexcept {
  Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
}
void OnFallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, fuse_file_info*) noexcept {
  Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof(ops));
  ops.init = OnInit;
  ops.lookup = OnLookup;
  ops.forget = OnForget;
  ops.forget_multi = OnForgetMulti;
  ops.getattr = OnGetattr;
  ops.readlink = OnReadlink;
  ops.open = OnOpen;
  ops.read = OnRead;
  ops.release = OnRelease;
  ops.opendir = OnOpendir;
  ops.readdir = OnReaddir;
  ops.readdirplus = OnReaddirplus;
  ops.releasedir = OnReleasedir;
  ops.statfs = OnStatfs;
  ops.getxattr = OnGetxattr;
  ops.listxattr = OnListxattr;
  ops.access = OnAccess;
  ops.setattr = OnSetattr;
  ops.mknod = OnMknod;
  ops.mkdir = OnMkdir;
  ops.unlink = OnUnlink;
  ops.rmdir = OnUnlink;
  ops.symlink = OnSymlink;
  ops.rename = OnRename;
  ops.link = OnLink;
  ops.write = OnWrite;
  ops.create = OnCreate;
  ops.setxattr = OnSetxattr;
  ops.removexattr = OnRemovexattr;
  ops.fallocate = OnFallocate;
  return ops;
}

// fuse_opt splits -o values at commas; a literal comma or backslash must be escaped.
std::string EscapeOption(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

void LogOpStats(const Mount& mount) {
  for (size_t i = 0; i < mount.ops.size(); ++i) {
    uint64_t calls = mount.ops[i].calls.load();
    if (calls == 0) continue;
    IMGFS_LOG(kInfo, "fuse " << kOpNames[i] << ": " << calls << " calls, "
                             << mount.ops[i].errors.load() << " errors, "
                             << mount.ops[i].nanos.load() / calls / 1000 << " us average");
  }
}

// The mount's "major:minor" from /proc/self/mountinfo (the last mount on `mountpoint`), or ""
// when not found. Reading the table instead of stat(2)ing the mountpoint matters: the loop
// is not serving yet, and a stat would wait for it forever.
std::string MountDevice(const std::string& mountpoint) {
  char* real = realpath(mountpoint.c_str(), nullptr);
  if (!real) return "";
  std::string want(real);
  free(real);
  // mountinfo escapes space, tab, newline and backslash in paths as \ooo.
  std::string escaped;
  for (char c : want) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\\') {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\%03o", static_cast<unsigned char>(c));
      escaped += buf;
    } else {
      escaped.push_back(c);
    }
  }
  FILE* f = fopen("/proc/self/mountinfo", "re");
  if (!f) return "";
  std::string device;
  char* line = nullptr;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) {
    // "<id> <parent> <major:minor> <root> <mount point> ..."
    char dev[64], root[4096], point[4096];
    if (sscanf(line, "%*d %*d %63s %4095s %4095s", dev, root, point) == 3 && escaped == point) {
      device = dev;
    }
  }
  free(line);
  fclose(f);
  return device;
}

// The kernel starts a FUSE mount with 128 KiB of readahead. Image files are read whole and
// served from MiB-sized units, so a larger window turns a cold sequential read into fewer,
// parallel requests. Best effort: it needs root (sysfs), and the mount works without it.
void GrowReadahead(const std::string& mountpoint) {
  constexpr const char* kReadaheadKb = "1024";
  std::string device = MountDevice(mountpoint);
  if (device.empty()) return;
  std::string path = "/sys/class/bdi/" + device + "/read_ahead_kb";
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  bool ok = fd >= 0 && write(fd, kReadaheadKb, strlen(kReadaheadKb)) > 0;
  if (fd >= 0) close(fd);
  if (!ok) IMGFS_LOG(kDebug, "cannot set " << path << ": " << std::strerror(errno));
}

struct ArgsDeleter {
  void operator()(fuse_args* args) const {
    fuse_opt_free_args(args);
    delete args;
  }
};

}  // namespace

Status ServeFuse(const Tree& tree, ContentReader& reader, const FuseOptions& options,
                 const std::function<void()>& on_ready) {
  if (options.mountpoint.empty()) return Status::InvalidArgument("no mountpoint given");
  struct stat st;
  if (stat(options.mountpoint.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      return Status::InvalidArgument("mountpoint " + options.mountpoint +
                                     " holds a stale FUSE mount whose server is gone: run "
                                     "`imgfs umount " + options.mountpoint + "` first");
    }
    return Status::InvalidArgument("mountpoint " + options.mountpoint + ": " +
                                   std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("mountpoint " + options.mountpoint + " is not a directory");
  }

  std::string mount_opts = "default_permissions,subtype=imgfs,fsname=" +
                           EscapeOption(options.fsname.empty() ? "imgfs" : options.fsname);
  for (const std::string& o : options.fuse_args) {
    if (!o.empty()) mount_opts += "," + o;  // the user's own -o list: taken as written
  }
  mount_opts += ",ro";  // last, so that no user option can make the mount writable
  std::vector<std::string> argv_strings = {"imgfs", "-o", mount_opts};
  if (options.debug) argv_strings.push_back("-d");
  std::unique_ptr<fuse_args, ArgsDeleter> args(new fuse_args(FUSE_ARGS_INIT(0, nullptr)));
  for (const std::string& a : argv_strings) {
    if (fuse_opt_add_arg(args.get(), a.c_str()) != 0) return Status::Internal("out of memory");
  }

  Mount mount{tree, reader, options.stats, {}};
  fuse_lowlevel_ops ops = MakeOps();
  fuse_session* se = fuse_session_new(args.get(), &ops, sizeof(ops), &mount);
  if (!se) {
    return Status::InvalidArgument("libfuse rejected the mount options \"" + mount_opts + "\"");
  }
  std::unique_ptr<fuse_session, void (*)(fuse_session*)> session(se, fuse_session_destroy);
  if (fuse_set_signal_handlers(se) != 0) {
    return Status::IoError("cannot install signal handlers for the FUSE loop");
  }
  if (fuse_session_mount(se, options.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    return Status::IoError("cannot mount FUSE at " + options.mountpoint +
                           " (is /dev/fuse there and usable? see scripts/setup)");
  }
  IMGFS_LOG(kInfo, "mounted " << options.fsname << " at " << options.mountpoint);
  GrowReadahead(options.mountpoint);
  if (on_ready) on_ready();

  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(config, 16);
  int rc = fuse_session_loop_mt(se, config);
  fuse_loop_cfg_destroy(config);

  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  LogOpStats(mount);
  // rc > 0 is the signal that ended the loop: an ordinary stop.
  if (rc < 0) {
    return Status::IoError("FUSE loop at " + options.mountpoint + " failed: " +
                           std::strerror(-rc));
  }
  return Status::Ok();
}

}  // namespace imgfs::fs
