#include "cache/blob_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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

constexpr uint64_t kReadChunk = uint64_t{1} << 20;

// Looks at the `<hex>.tmp.*` files in `dir` that no live writer holds: a writer holds an
// exclusive flock(2) on its file for as long as it lives, and the lock dies with its process
// (SIGKILL, another PID namespace), so a file whose lock can be taken was abandoned. The
// largest abandoned file of at most `size` bytes is adopted: renamed to `temp`, and its
// descriptor returned with the lock held (-1 when there is none; `*adopted` its length). The
// other abandoned files are removed. An empty file may be a writer's that has not taken its
// lock yet: it is removed only when it has not been touched for an hour.
int AdoptAbandoned(const std::string& dir, std::string_view hex, uint64_t size,
                   const std::string& temp, uint64_t* adopted) {
  *adopted = 0;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return -1;
  const std::string prefix = std::string(hex) + ".tmp.";
  const time_t cutoff = ::time(nullptr) - 3600;
  int best_fd = -1;
  std::string best_path;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name.substr(0, prefix.size()) != prefix) continue;
    std::string path = dir + "/" + std::string(name);
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st, now;
    // Skipped: a live writer's file, or one renamed or replaced since it was listed.
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0 || ::fstat(fd, &st) != 0 ||
        ::stat(path.c_str(), &now) != 0 || st.st_ino != now.st_ino || st.st_dev != now.st_dev ||
        (st.st_size == 0 && st.st_mtime >= cutoff)) {
      ::close(fd);
      continue;
    }
    const uint64_t len = static_cast<uint64_t>(st.st_size);
    if (len > 0 && len <= size && len > *adopted) {
      std::swap(fd, best_fd);
      std::swap(path, best_path);
      *adopted = len;
    }
    if (fd >= 0) {
      IMGFS_LOG(kInfo, "removing " << path << ", left by a writer that died");
      ::unlink(path.c_str());
      ::close(fd);
    }
  }
  ::closedir(d);
  if (best_fd >= 0 && (::rename(best_path.c_str(), temp.c_str()) != 0 ||
                       ::lseek(best_fd, static_cast<off_t>(*adopted), SEEK_SET) < 0)) {
    ::close(best_fd);
    best_fd = -1;
  }
  if (best_fd < 0) {
    *adopted = 0;
    return -1;
  }
  IMGFS_LOG(kInfo, "resuming blob " << hex << " after the " << *adopted
                                    << " bytes a writer that died left in " << best_path);
  return best_fd;
}

class BlobWriterImpl : public BlobWriter {
 public:
  BlobWriterImpl(UnitStore* store, std::shared_ptr<const void> keep_alive, std::string digest,
                 uint64_t size, int fd, std::string temp_path, uint64_t resumed)
      : store_(store),
        keep_alive_(std::move(keep_alive)),
        digest_(std::move(digest)),
        size_(size),
        fd_(fd),
        temp_path_(std::move(temp_path)),
        resumed_(resumed),
        hasher_(std::make_unique<Sha256>()) {}

  uint64_t resumed_bytes() const override { return resumed_; }

  Status ReadResumed(const std::function<Status(std::string_view)>& sink) override {
    if (fd_ < 0 || committed_ || resumed_ == 0 || resumed_read_) {
      return Status::Internal("blob writer for " + digest_ + ": ReadResumed out of order");
    }
    resumed_read_ = true;
    std::string chunk;
    for (uint64_t off = 0; off < resumed_; off += kReadChunk) {
      const uint64_t len = std::min(kReadChunk, resumed_ - off);
      Status s = PreadFull(fd_, off, len, &chunk);
      if (s.ok() && chunk.size() != len) s = Status::IoError("the file is shorter than before");
      if (!s.ok()) return Fail(s.WithContext(Prefix() + "reading back " + temp_path_));
      hasher_->Update(chunk);
      IMGFS_RETURN_IF_ERROR(sink(chunk));
    }
    written_ = resumed_;
    return Status::Ok();
  }

  Status Restart() override {
    if (fd_ < 0 || committed_) {
      return Status::Internal("blob writer for " + digest_ + " used after Commit or a failure");
    }
    if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) < 0) {
      return Fail(ErrnoStatus(Prefix() + "cannot truncate", temp_path_, errno));
    }
    resumed_ = 0;
    resumed_read_ = false;
    written_ = 0;
    hasher_ = std::make_unique<Sha256>();
    actual_.clear();
    return Status::Ok();
  }

  ~BlobWriterImpl() override {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_path_.c_str());
  }

  Status Append(std::string_view bytes) override {
    if (committed_ || fd_ < 0) {
      return Status::Internal("blob writer for " + digest_ + " used after Commit or a failure");
    }
    if (resumed_ > 0 && !resumed_read_) {
      return Status::Internal("blob writer for " + digest_ +
                              ": Append before ReadResumed or Restart");
    }
    if (!actual_.empty()) {
      return Status::Internal("blob writer for " + digest_ + ": Append after CheckDigest");
    }
    if (bytes.size() > size_ - written_) {
      return Fail(Status::InvalidArgument("blob " + digest_ + " is longer than its size " +
                                          std::to_string(size_)));
    }
    Status s = WriteFull(fd_, bytes);
    if (!s.ok()) return Fail(s.WithContext(Prefix() + "writing " + temp_path_));
    hasher_->Update(bytes);
    written_ += bytes.size();
    return Status::Ok();
  }

  Status CheckDigest() override {
    if (committed_ || fd_ < 0) {
      return Status::Internal("blob writer for " + digest_ + " used after Commit or a failure");
    }
    if (actual_.empty()) actual_ = hasher_->FinishDigest();
    if (actual_ != digest_) {
      return Status::DigestMismatch("blob " + digest_ + " was written with bytes that hash to " +
                                    actual_);
    }
    return Status::Ok();
  }

  Status Commit() override {
    if (committed_ || fd_ < 0) {
      return Status::Internal("blob writer for " + digest_ + " used after Commit or a failure");
    }
    if (written_ != size_) {
      return Fail(Status::InvalidArgument("blob " + digest_ + " has " + std::to_string(written_) +
                                          " bytes, its descriptor says " + std::to_string(size_)));
    }
    // Checked here whatever the caller did: "a complete blob file is the exact blob" is a
    // promise of the cache itself.
    if (Status s = CheckDigest(); !s.ok()) {
      IMGFS_LOG(kWarning, Prefix() << s.message());
      return Fail(Status::DigestMismatch(s.message() + "; nothing was cached"));
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
    if (!s.ok()) return s.WithContext("marking blob " + digest_ + " complete");
    store_->NoteWritten(size);
    return Status::Ok();
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
  uint64_t resumed_;  // bytes adopted from a writer that died, until Restart
  bool resumed_read_ = false;
  bool committed_ = false;
  std::unique_ptr<Sha256> hasher_;
  std::string actual_;  // the digest hasher_ finished with; "" while bytes may still come
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
  // Bytes stream into a private file and replace the blob file only at Commit, so neither
  // this process nor another ever reads an unverified stream through the blob's path.
  std::string temp = dir + "/" + std::string(hex) + ".tmp." + std::to_string(::getpid()) + "." +
                     std::to_string(temp_counter.fetch_add(1));
  uint64_t resumed = 0;
  int fd = AdoptAbandoned(dir, hex, size, temp, &resumed);
  if (fd < 0) {
    fd = ::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus("cache " + store->root() + ": cannot create", temp, errno);
    // Held for the writer's life: the file is not abandoned while it lives (AdoptAbandoned).
    if (::flock(fd, LOCK_EX) != 0) {
      Status locked = ErrnoStatus("cache " + store->root() + ": cannot lock", temp, errno);
      ::unlink(temp.c_str());
      ::close(fd);
      return locked;
    }
  }
  return std::unique_ptr<BlobWriter>(new BlobWriterImpl(
      store, std::move(keep_alive), std::string(digest), size, fd, temp, resumed));
}

}  // namespace imgfs::cache
