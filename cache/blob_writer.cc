#include "cache/blob_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <ctime>

#include "base/digest.h"
#include "base/log.h"
#include "cache/blob_files.h"
#include "cache/records.h"
#include "cache/unit_store.h"

namespace imgfs::cache {
namespace {

std::atomic<uint64_t> temp_counter{0};

// Removes `<hex>.tmp.<pid>.<n>` files in `dir` left by writers that died (a crash, a killed
// pull). A file counts as stale only when its process is gone and it has not been written for
// an hour: a live writer in another PID namespace (a container sharing the cache) has a pid
// that means nothing here, but it keeps its file's mtime fresh.
void RemoveStaleTempFiles(const std::string& dir, std::string_view hex) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  const std::string prefix = std::string(hex) + ".tmp.";
  const time_t cutoff = ::time(nullptr) - 3600;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name.substr(0, prefix.size()) != prefix) continue;
    long pid = std::strtol(e->d_name + prefix.size(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 ||
        errno != ESRCH) {
      continue;
    }
    std::string path = dir + "/" + std::string(name);
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && st.st_mtime < cutoff) {
      IMGFS_LOG(kInfo, "removing " << path << ", left by a writer that died");
      ::unlink(path.c_str());
    }
  }
  ::closedir(d);
}

class BlobWriterImpl : public BlobWriter {
 public:
  BlobWriterImpl(UnitStore* store, std::shared_ptr<const void> keep_alive, std::string digest,
                 uint64_t size, int fd, std::string temp_path)
      : store_(store),
        keep_alive_(std::move(keep_alive)),
        digest_(std::move(digest)),
        size_(size),
        fd_(fd),
        temp_path_(std::move(temp_path)) {}

  ~BlobWriterImpl() override {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_path_.c_str());
  }

  Status Append(std::string_view bytes) override {
    if (committed_ || fd_ < 0) {
      return Status::Internal("blob writer for " + digest_ + " used after Commit or a failure");
    }
    if (bytes.size() > size_ - written_) {
      return Fail(Status::InvalidArgument("blob " + digest_ + " is longer than its size " +
                                          std::to_string(size_)));
    }
    Status s = WriteFull(fd_, bytes);
    if (!s.ok()) return Fail(s.WithContext(Prefix() + "writing " + temp_path_));
    hasher_.Update(bytes);
    written_ += bytes.size();
    return Status::Ok();
  }

  Status Commit() override {
    if (committed_ || fd_ < 0) {
      return Status::Internal("blob writer for " + digest_ + " used after Commit or a failure");
    }
    if (written_ != size_) {
      return Fail(Status::InvalidArgument("blob " + digest_ + " has " + std::to_string(written_) +
                                          " bytes, its descriptor says " +
                                          std::to_string(size_)));
    }
    // The caller verified the stream too; checking here makes "a complete blob file is the
    // exact blob" a promise of the cache itself.
    std::string actual = hasher_.FinishDigest();
    if (actual != digest_) {
      IMGFS_LOG(kWarning, Prefix() << "blob " << digest_ << " was written with bytes that hash to "
                                   << actual);
      return Fail(Status::DigestMismatch("blob " + digest_ + " hashes to " + actual +
                                         "; nothing was cached"));
    }
    if (::fsync(fd_) != 0) return Fail(ErrnoStatus(Prefix() + "fsync", temp_path_, errno));
    ::close(fd_);
    fd_ = -1;
    std::string hex(DigestHex(digest_));
    std::string final_path = store_->files().PathOf(hex);
    if (::rename(temp_path_.c_str(), final_path.c_str()) != 0) {
      return ErrnoStatus(Prefix() + "cannot rename " + temp_path_ + " to", final_path, errno);
    }
    committed_ = true;  // the temp file is gone; the blob file holds the bytes now
    std::string dir = store_->files().DirOf(hex);
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      ::fsync(dir_fd);  // makes the rename durable before the index says "complete"
      ::close(dir_fd);
    }
    store_->files().Forget(hex);  // a cached descriptor would read the replaced inode

    const uint64_t size = size_;
    const int64_t now = NowUnix();
    Status s = store_->env().Write([&](LmdbTxn& txn) {
      return UpdateBlobRecord(txn, hex, [&](BlobRecord* r) {
        r->size = size;
        r->complete = true;
        r->access_unix = now;
      });
    });
    return s.ok() ? s : s.WithContext("marking blob " + digest_ + " complete");
  }

 private:
  std::string Prefix() const { return "cache " + store_->root() + ": "; }

  Status Fail(Status s) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    ::unlink(temp_path_.c_str());
    return s;
  }

  UnitStore* const store_;
  const std::shared_ptr<const void> keep_alive_;
  const std::string digest_;
  const uint64_t size_;
  int fd_;
  const std::string temp_path_;
  uint64_t written_ = 0;
  bool committed_ = false;
  Sha256 hasher_;
};

}  // namespace

Result<std::unique_ptr<BlobWriter>> NewBlobWriter(UnitStore* store, std::string_view digest,
                                                  uint64_t size,
                                                  std::shared_ptr<const void> keep_alive) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(digest));
  std::string_view hex = DigestHex(digest);
  std::string dir = store->files().DirOf(hex);
  Status s = MakeDirs(dir, 0700);
  if (!s.ok()) return s.WithContext("cache " + store->root());
  RemoveStaleTempFiles(dir, hex);
  // Bytes stream into a private file and replace the blob file only at Commit, so neither
  // this process nor another ever reads an unverified stream through the blob's path.
  std::string temp = dir + "/" + std::string(hex) + ".tmp." + std::to_string(::getpid()) + "." +
                     std::to_string(temp_counter.fetch_add(1));
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("cache " + store->root() + ": cannot create", temp, errno);
  return std::unique_ptr<BlobWriter>(new BlobWriterImpl(store, std::move(keep_alive),
                                                        std::string(digest), size, fd, temp));
}

}  // namespace imgfs::cache
