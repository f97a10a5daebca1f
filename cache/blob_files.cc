#include "cache/blob_files.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace imgfs::cache {

BlobFd::~BlobFd() {
  if (fd_ >= 0) ::close(fd_);
}

std::string BlobFiles::DirOf(std::string_view hex) const {
  return root_ + "/blobs/sha256/" + std::string(hex.substr(0, 2));
}

std::string BlobFiles::PathOf(std::string_view hex) const {
  return DirOf(hex) + "/" + std::string(hex);
}

Result<std::shared_ptr<BlobFd>> BlobFiles::Get(std::string_view hex) {
  std::string key(hex);
  {
    MutexLock lock(&mu_);
    auto it = map_.find(key);
    if (it != map_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  // Open outside the lock: a slow disk must not stall reads of other blobs.
  std::string path = PathOf(hex);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 && errno == ENOENT) {
    IMGFS_RETURN_IF_ERROR(MakeDirs(DirOf(hex), 0700));
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  }
  if (fd < 0) return ErrnoStatus("cannot open blob file", path, errno);
  auto file = std::make_shared<BlobFd>(fd);

  MutexLock lock(&mu_);
  auto it = map_.find(key);
  if (it != map_.end()) {  // another thread opened it meanwhile: keep one
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }
  lru_.emplace_front(key, file);
  map_[key] = lru_.begin();
  while (lru_.size() > capacity_) {
    map_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return file;
}

void BlobFiles::Forget(std::string_view hex) {
  MutexLock lock(&mu_);
  auto it = map_.find(std::string(hex));
  if (it == map_.end()) return;
  lru_.erase(it->second);
  map_.erase(it);
}

Status ErrnoStatus(std::string_view what, std::string_view path, int err) {
  return Status::IoError(std::string(what) + " " + std::string(path) + ": " + std::strerror(err));
}

Status MakeDirs(const std::string& path, unsigned mode) {
  if (path.empty()) return Status::InvalidArgument("empty directory path");
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (prefix.empty()) continue;
    if (::mkdir(prefix.c_str(), mode) == 0 || errno == EEXIST) continue;
    return ErrnoStatus("cannot create directory", prefix, errno);
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("cannot stat", path, errno);
  if (!S_ISDIR(st.st_mode)) return Status::IoError(path + " exists and is not a directory");
  return Status::Ok();
}

Status PreadFull(int fd, uint64_t off, uint64_t len, std::string* out) {
  out->resize(len);
  uint64_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, out->data() + done, len - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      out->clear();
      return Status::IoError(std::string("pread: ") + std::strerror(err));
    }
    if (n == 0) break;
    done += static_cast<uint64_t>(n);
  }
  out->resize(done);
  return Status::Ok();
}

Status PwriteFull(int fd, uint64_t off, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done,
                         static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(std::string("pwrite: ") + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status WriteFull(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(std::string("write: ") + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace imgfs::cache
