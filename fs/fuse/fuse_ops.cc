// The FUSE callbacks: each unpacks its request, asks the tree or the reader, and replies
// (through Request, fuse_request.h). Writes of any kind are EROFS.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fs/fuse/fuse_fs.h"
#include "fs/fuse/fuse_request.h"

namespace imgfs::fs::internal {
namespace {

// The file handle of an open that Passthrough::BeginOpen counted; the low 32 bits are its
// backing id (0: through the page cache).
constexpr uint64_t kTrackedOpen = uint64_t{1} << 32;

// Most pieces a read replies with as iovecs (libfuse adds one for the header; IOV_MAX is 1024).
constexpr size_t kMaxReplyIovecs = 256;

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
      fuse_entry_param e = NegativeEntry();
      return r.Replied(fuse_reply_entry(req, &e));
    }
    if (!attr.ok()) return r.Fail(attr.status());
    fuse_entry_param e = ToEntry(ToStat(*attr));
    r.Replied(fuse_reply_entry(req, &e));
  });
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
    Passthrough& passthrough = r.passthrough();
    if (attr->size >= ContentReader::kDecodedFileMinBytes && passthrough.available()) {
      // Served by the kernel from the decoded copy when there is one (passthrough.h); read
      // whole through the daemon, the file gets one for the next open.
      r.reader().KeepDecodedFiles();
      uint32_t backing = passthrough.BeginOpen(ino, [&]() -> Result<int> {
        IMGFS_ASSIGN_OR_RETURN(FileSource file, r.tree().GetFileSource(ino));
        return r.reader().OpenDecodedFile(file);
      });
      fi->fh = kTrackedOpen | backing;
      if (!passthrough.available()) r.reader().StopDecodedFiles();  // refused: of no use
      if (backing != 0) {
        Passthrough::MarkNextOpen(backing);
        r.reader().CountPassthroughOpen();
      }
    }
    r.Replied(fuse_reply_open(req, fi));
  });
}

void OnRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
            fuse_file_info* /*fi*/) noexcept {
  Serve(req, Op::kRead, [&](Request& r) {
    if (off < 0) return r.Error(EINVAL);
    Result<FileSource> file = r.tree().GetFileSource(ino);
    if (!file.ok()) return r.Fail(file.status());
    // The reply points into the decoded units (no copy before the kernel's own); the vectors
    // are per loop thread, since reads are very frequent.
    thread_local std::vector<ContentReader::Piece> pieces;
    thread_local std::vector<iovec> iov;
    Result<size_t> n = r.reader().ReadPieces(*file, static_cast<uint64_t>(off), size, &pieces);
    if (!n.ok()) {
      pieces.clear();
      return r.Fail(n.status());
    }
    if (pieces.size() <= kMaxReplyIovecs) {
      iov.clear();
      for (const ContentReader::Piece& p : pieces) {
        iov.push_back({const_cast<char*>(p.data), p.size});
      }
      r.Replied(fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size())));
    } else {
      // Many tiny chunks (writev takes at most IOV_MAX vectors): one copy.
      std::unique_ptr<char[]> buffer(new char[*n]);
      char* at = buffer.get();
      for (const ContentReader::Piece& p : pieces) {
        std::memcpy(at, p.data, p.size);
        at += p.size;
      }
      r.Replied(fuse_reply_buf(req, buffer.get(), *n));
    }
    pieces.clear();  // lets go of the units
  });
}

void OnRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  Serve(req, Op::kRelease, [&](Request& r) {
    if (fi->fh & kTrackedOpen) r.passthrough().EndOpen(ino, static_cast<uint32_t>(fi->fh));
    r.Error(0);
  });
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
          fuse_entry_param e = ToEntry(ToStat(attr));
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
      return r.Xattr(size, r.stats()());
    }
    Result<std::string> value = r.tree().GetXattr(ino, name);
    if (value.status().IsNotFound() && r.tree().GetAttr(ino).ok()) return r.Error(ENODATA);
    if (!value.ok()) return r.Fail(value.status());
    r.Xattr(size, *value);
  });
}

void OnListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) noexcept {
  Serve(req, Op::kListxattr, [&](Request& r) {
    Result<std::vector<std::string>> names = r.tree().ListXattrs(ino);
    if (!names.ok()) return r.Fail(names.status());
    r.Xattr(size, XattrNameList(*names));
  });
}

void OnAccess(fuse_req_t req, fuse_ino_t ino, int mask) noexcept {
  Serve(req, Op::kAccess, [&](Request& r) {
    if (mask & W_OK) return r.Error(EROFS);
    Result<Tree::Attr> attr = r.tree().GetAttr(ino);
    r.Fail(attr.status());
  });
}

// Every request that would change the filesystem (SetWriteOps, and fallocate). "ro" already
// makes the kernel refuse them; answering them anyway keeps the filesystem read-only if a mount
// option is lost.
struct CountedRefusal {
  template <typename... Args>
  static void Refuse(fuse_req_t req, Args...) noexcept {
    Serve(req, Op::kWrite, [](Request& r) { r.Error(EROFS); });
  }
};

}  // namespace

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
  SetWriteOps<CountedRefusal>(&ops);
  ops.fallocate = CountedRefusal::Refuse<fuse_ino_t, int, off_t, off_t, fuse_file_info*>;
  return ops;
}

}  // namespace imgfs::fs::internal
