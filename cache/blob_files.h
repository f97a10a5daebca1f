// BlobFiles: the sparse blob files of the content store, blobs/sha256/<2 hex>/<64 hex>, and a
// small cache of their open file descriptors.
//
// Opening and closing a file on every 128 KiB FUSE read costs more than the read, so up to
// `capacity` descriptors stay open (least recently used one closed first). A descriptor is
// handed out as a shared_ptr: eviction never closes a file another thread is reading.
//
// A blob file can be replaced by rename (BlobWriter::Commit, here or in another process); a
// cached descriptor then still reads the old inode. Callers that find bytes that do not verify
// call Forget and read again through a fresh descriptor before they decide the store is bad.
//
// The helpers below never return short: a read or write that cannot complete is kIoError,
// except PreadFull, which reports how many bytes the file really had.
//
// Thread-safety: all methods may be called from many threads at once.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "base/mutex.h"
#include "base/status.h"
#include "base/thread_annotations.h"

namespace imgfs::cache {

// An owned file descriptor; closed when the last user lets go.
class BlobFd {
 public:
  explicit BlobFd(int fd) : fd_(fd) {}
  ~BlobFd();
  BlobFd(const BlobFd&) = delete;
  BlobFd& operator=(const BlobFd&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

class BlobFiles {
 public:
  BlobFiles(std::string root, size_t capacity) : root_(std::move(root)), capacity_(capacity) {}

  // <root>/blobs/sha256/<2 hex> and <root>/blobs/sha256/<2 hex>/<hex>.
  std::string DirOf(std::string_view hex) const;
  std::string PathOf(std::string_view hex) const;

  // A read-write descriptor of the blob file, created (sparse, empty) with its directory when
  // missing.
  Result<std::shared_ptr<BlobFd>> Get(std::string_view hex);
  // Drops the cached descriptor of `hex`, so the next Get opens the file by path again.
  void Forget(std::string_view hex);

 private:
  using Lru = std::list<std::pair<std::string, std::shared_ptr<BlobFd>>>;

  // Constant after construction.
  const std::string root_;
  const size_t capacity_;

  // State below is protected by mu_.
  Mutex mu_;
  Lru lru_ GUARDED_BY(mu_);  // most recent first
  std::unordered_map<std::string, Lru::iterator> map_ GUARDED_BY(mu_);
};

// mkdir -p `path`; directories it creates get `mode`.
Status MakeDirs(const std::string& path, unsigned mode);

// Reads up to `len` bytes at `off` into `*out` (resized to what was read: shorter at EOF).
Status PreadFull(int fd, uint64_t off, uint64_t len, std::string* out);
Status PwriteFull(int fd, uint64_t off, std::string_view bytes);
Status WriteFull(int fd, std::string_view bytes);

// "<what> <path>: <strerror(errno)>" as kIoError.
Status ErrnoStatus(std::string_view what, std::string_view path, int err);

}  // namespace imgfs::cache
