#include "cache/decoded_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <ctime>
#include <vector>

#include "base/digest.h"
#include "cache/blob_files.h"
#include "cache/records.h"

namespace imgfs::cache {
namespace {

std::atomic<uint64_t> temp_counter{0};

constexpr size_t kDigestLen = 7 + kHexLen;  // "sha256:" + hex

// Closes a descriptor when it goes out of scope.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

// The names in `dir` ("" for . and ..), or none when it cannot be read.
std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      std::string_view n(e->d_name);
      if (n != "." && n != "..") out.emplace_back(n);
    }
    ::closedir(d);
  }
  return out;
}

// Removes the temporary files in `dir` whose writers are gone: their flock(2) can be taken,
// and they have not been written to for a while (a writer between creating its file and
// locking it is not mistaken for a dead one).
void RemoveAbandonedTemps(const std::string& dir) {
  constexpr time_t kQuietSeconds = 10;
  for (const std::string& name : Names(dir)) {
    if (name.find(".tmp.") == std::string::npos) continue;
    const std::string temp = dir + "/" + name;
    FdCloser fd{::open(temp.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
    struct stat st;
    if (fd.fd < 0 || ::fstat(fd.fd, &st) != 0 || st.st_mtime > ::time(nullptr) - kQuietSeconds) {
      continue;
    }
    if (::flock(fd.fd, LOCK_EX | LOCK_NB) == 0) ::unlink(temp.c_str());
  }
}

}  // namespace

std::string DecodedFiles::DirOf(std::string_view hex) const {
  return root_ + "/blobs/sha256/" + std::string(hex.substr(0, 2)) + "/" + std::string(hex) +
         std::string(kDirSuffix);
}

std::string_view DecodedFiles::BlobHexOfDir(std::string_view name) {
  if (name.size() != kHexLen + kDirSuffix.size() || name.substr(kHexLen) != kDirSuffix) return {};
  std::string_view hex = name.substr(0, kHexLen);
  return IsHex64(hex) ? hex : std::string_view();
}

std::string DecodedFiles::NameOf(std::string_view path) {
  return std::string(DigestHex(Sha256Digest(path)));
}

Result<int> DecodedFiles::Open(std::string_view blob_digest, std::string_view path,
                               uint64_t size) const {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(blob_digest));
  const std::string file = DirOf(DigestHex(blob_digest)) + "/" + NameOf(path);
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return Status::NotFound("no decoded file");
    return ErrnoStatus("cannot open", file, errno);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != size) {
    ::close(fd);
    ::unlink(file.c_str());
    return Status::NotFound("decoded file " + file + " is not of the file's size; removed");
  }
  return fd;
}

Status DecodedFiles::Write(std::string_view blob_digest, std::string_view path, uint64_t size,
                           const Fill& fill) const {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(blob_digest));
  const std::string dir = DirOf(DigestHex(blob_digest));
  IMGFS_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  RemoveAbandonedTemps(dir);
  const std::string file = dir + "/" + NameOf(path);
  const std::string temp = file + ".tmp." + std::to_string(::getpid()) + "." +
                           std::to_string(temp_counter.fetch_add(1));
  FdCloser out{::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
  if (out.fd < 0) return ErrnoStatus("cannot create", temp, errno);
  // Held while the file is written; the lock dies with the writer (killed at unmount, say),
  // which tells a later writer that the file is abandoned.
  ::flock(out.fd, LOCK_EX);
  Sha256 hash;
  uint64_t written = 0;
  Status s = fill([&](std::string_view bytes) -> Status {
    if (bytes.size() > size - written) {
      return Status::IoError("more than the file's " + std::to_string(size) + " bytes");
    }
    IMGFS_RETURN_IF_ERROR(WriteFull(out.fd, bytes));
    hash.Update(bytes);
    written += bytes.size();
    return Status::Ok();
  });
  if (s.ok() && written != size) {
    s = Status::IoError("got " + std::to_string(written) + " of the file's " +
                        std::to_string(size) + " bytes");
  }
  if (s.ok() && ::fdatasync(out.fd) != 0) s = ErrnoStatus("cannot sync", temp, errno);
  if (s.ok()) {
    std::string digest = hash.FinishDigest();
    if (::fsetxattr(out.fd, kDigestXattr, digest.data(), digest.size(), 0) != 0) {
      s = ErrnoStatus("cannot set " + std::string(kDigestXattr) + " on", temp, errno);
    }
  }
  if (s.ok() && ::rename(temp.c_str(), file.c_str()) != 0) {
    s = ErrnoStatus("cannot rename to", file, errno);
  }
  if (!s.ok()) {
    ::unlink(temp.c_str());
    return s.WithContext("writing decoded file of " + std::string(path) + " of " +
                         std::string(blob_digest));
  }
  return Status::Ok();
}

uint64_t DecodedFiles::DiskBytes(std::string_view hex) const {
  const std::string dir = DirOf(hex);
  uint64_t total = 0;
  for (const std::string& name : Names(dir)) {
    struct stat st;
    if (::lstat((dir + "/" + name).c_str(), &st) == 0) {
      total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return total;
}

Status DecodedFiles::RemoveAll(std::string_view hex) const {
  const std::string dir = DirOf(hex);
  for (const std::string& name : Names(dir)) {
    std::string file = dir + "/" + name;
    if (::unlink(file.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus("cannot remove", file, errno);
    }
  }
  // A writer may have created a file since: the directory then stays, still counted.
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT && errno != ENOTEMPTY) {
    return ErrnoStatus("cannot remove", dir, errno);
  }
  return Status::Ok();
}

std::vector<std::string> DecodedFiles::Files(std::string_view hex) const {
  std::vector<std::string> out;
  for (std::string& name : Names(DirOf(hex))) {
    if (IsHex64(name)) out.push_back(std::move(name));  // else a temporary file
  }
  return out;
}

std::optional<std::string> DecodedFiles::StoredDigest(const std::string& path) {
  char want[kDigestLen + 1];
  ssize_t got = ::lgetxattr(path.c_str(), kDigestXattr, want, sizeof(want));
  if (got != static_cast<ssize_t>(kDigestLen) || !ValidateDigest({want, kDigestLen}).ok()) {
    return std::nullopt;
  }
  return std::string(want, kDigestLen);
}

}  // namespace imgfs::cache
