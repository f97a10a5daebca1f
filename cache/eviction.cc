#include "cache/eviction.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>

#include "base/digest.h"
#include "base/log.h"
#include "cache/decoded_files.h"
#include "cache/records.h"
#include "cache/unit_store.h"

namespace imgfs::cache {
namespace {

std::atomic<uint64_t> pin_counter{0};

// Calls `fn` with the name of every entry of the blob directories, blobs/sha256/<2 hex>/.
template <typename Fn>
void ForEachBlobDirEntry(const std::string& root, Fn fn) {
  const std::string top = root + "/blobs/sha256";
  DIR* d = ::opendir(top.c_str());
  if (d == nullptr) return;
  while (struct dirent* e = ::readdir(d)) {
    if (std::string_view(e->d_name).size() != 2) continue;
    if (DIR* inner = ::opendir((top + "/" + e->d_name).c_str())) {
      while (struct dirent* f = ::readdir(inner)) fn(std::string_view(f->d_name));
      ::closedir(inner);
    }
  }
  ::closedir(d);
}

uint64_t DiskBytes(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

class PinFile : public Pin {
 public:
  PinFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PinFile() override {
    ::unlink(path_.c_str());
    ::close(fd_);  // drops the lock
  }

 private:
  const int fd_;
  const std::string path_;
};

}  // namespace

BlobStats Eviction::GetBlobStats(std::string_view blob_digest) {
  BlobStats stats;
  if (!ValidateDigest(blob_digest).ok()) return stats;
  std::string_view hex = DigestHex(blob_digest);
  Status s = store_->env().Read([&](LmdbTxn& txn) {
    stats = BlobStats();  // the body may run again after a map resize
    std::string value;
    Status got = txn.Get(Db::kBlobs, hex, &value);
    if (got.ok()) {
      BlobRecord r = DecodeBlobRecord(value);
      stats.size = r.size;
      stats.complete = r.complete;
    } else if (!got.IsNotFound()) {
      return got;
    }
    IMGFS_RETURN_IF_ERROR(txn.Scan(Db::kUnits, hex, [&](std::string_view k, std::string_view v) {
      if (k.size() != kHexLen + 8 || k.substr(0, kHexLen) != hex) return false;
      if (std::optional<uint64_t> clen = UnitValueClen(v)) {
        ++stats.units_present;
        stats.bytes_present += *clen;
      }
      return true;
    }));
    if (stats.complete) stats.bytes_present = stats.size;
    return Status::Ok();
  });
  if (!s.ok()) IMGFS_LOG(kWarning, "blob stats of " << blob_digest << ": " << s.ToString());
  return stats;
}

Result<std::vector<BlobUsage>> Eviction::ListBlobs() {
  std::map<std::string, BlobUsage> blobs;  // by hex
  Status s = store_->env().Read([&](LmdbTxn& txn) {
    blobs.clear();
    IMGFS_RETURN_IF_ERROR(txn.Scan(Db::kBlobs, "", [&](std::string_view k, std::string_view v) {
      BlobRecord r = DecodeBlobRecord(v);
      BlobUsage& u = blobs[std::string(k)];
      u.size = r.size;
      u.complete = r.complete;
      u.access_unix = r.access_unix;
      return true;
    }));
    return txn.Scan(Db::kUnits, "", [&](std::string_view k, std::string_view v) {
      std::optional<uint64_t> clen = UnitValueClen(v);
      if (k.size() != kHexLen + 8 || !clen) return true;
      BlobUsage& u = blobs[std::string(k.substr(0, kHexLen))];
      ++u.units_present;
      u.bytes_present += *clen;
      return true;
    });
  });
  IMGFS_RETURN_IF_ERROR(s);
  // Files without records (a crash between write and publish) take space too, and so do a
  // blob's decoded files without its blob file.
  ForEachBlobDirEntry(store_->root(), [&](std::string_view name) {
    if (std::string_view hex = DecodedFiles::BlobHexOfDir(name); !hex.empty()) name = hex;
    if (IsHex64(name)) blobs.try_emplace(std::string(name));
  });
  const DecodedFiles decoded(store_->root());
  std::vector<BlobUsage> out;
  out.reserve(blobs.size());
  for (auto& [hex, u] : blobs) {
    u.digest = "sha256:" + hex;
    if (u.complete) u.bytes_present = u.size;
    u.decoded_bytes = decoded.DiskBytes(hex);
    u.disk_bytes = DiskBytes(store_->files().PathOf(hex)) + u.decoded_bytes;
    out.push_back(std::move(u));
  }
  return out;
}

Result<std::vector<UnitUsage>> Eviction::ListUnits(std::string_view blob_digest) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(blob_digest));
  std::string_view hex = DigestHex(blob_digest);
  std::vector<UnitUsage> units;
  Status s = store_->env().Read([&](LmdbTxn& txn) {
    units.clear();
    return txn.Scan(Db::kUnits, hex, [&](std::string_view k, std::string_view v) {
      if (k.size() != kHexLen + 8 || k.substr(0, kHexLen) != hex) return false;
      if (std::optional<uint64_t> clen = UnitValueClen(v)) {
        units.push_back({ReadU64(k, kHexLen), *clen});
      }
      return true;
    });
  });
  IMGFS_RETURN_IF_ERROR(s);
  return units;
}

Status Eviction::PunchUnit(std::string_view blob_digest, uint64_t coff) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(blob_digest));
  std::string hex(DigestHex(blob_digest));
  std::string key = UnitKey(hex, coff);
  uint64_t clen = 0;
  Status s = store_->env().Write([&](LmdbTxn& txn) {
    std::string value;
    Status got = txn.Get(Db::kBlobs, hex, &value);
    if (got.ok() && DecodeBlobRecord(value).complete) {
      return Status::InvalidArgument("blob " + std::string(blob_digest) +
                                     " is complete: drop it whole");
    }
    if (!got.ok() && !got.IsNotFound()) return got;
    got = txn.Get(Db::kUnits, key, &value);
    if (got.IsNotFound()) {
      return Status::NotFound("no unit of blob " + std::string(blob_digest) + " at offset " +
                              std::to_string(coff));
    }
    IMGFS_RETURN_IF_ERROR(got);
    clen = UnitValueClen(value).value_or(0);
    return txn.Delete(Db::kUnits, key);
  });
  IMGFS_RETURN_IF_ERROR(s);
  if (clen == 0) return Status::Ok();
  // The record is gone; now the bytes. A failure here leaves unreferenced bytes, not a lie.
  std::string path = store_->files().PathOf(hex);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? Status::Ok() : ErrnoStatus("cannot open", path, errno);
  int rc = ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(coff),
                       static_cast<off_t>(clen));
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus("cannot punch a hole in", path, err);
  return Status::Ok();
}

Status Eviction::DropBlob(std::string_view blob_digest) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(blob_digest));
  std::string hex(DigestHex(blob_digest));
  Status s = store_->env().Write([&](LmdbTxn& txn) {
    std::vector<std::string> keys;
    IMGFS_RETURN_IF_ERROR(txn.Scan(Db::kUnits, hex, [&](std::string_view k, std::string_view) {
      if (k.size() != kHexLen + 8 || k.substr(0, kHexLen) != hex) return false;
      keys.emplace_back(k);
      return true;
    }));
    for (const std::string& k : keys) IMGFS_RETURN_IF_ERROR(txn.Delete(Db::kUnits, k));
    return txn.Delete(Db::kBlobs, hex);
  });
  IMGFS_RETURN_IF_ERROR(s.WithContext("dropping blob " + std::string(blob_digest)));
  store_->files().Forget(hex);
  std::string path = store_->files().PathOf(hex);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus("cannot remove", path, errno);
  }
  return DecodedFiles(store_->root()).RemoveAll(hex);
}

Status Eviction::DropDecodedFiles(std::string_view blob_digest) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(blob_digest));
  return DecodedFiles(store_->root()).RemoveAll(DigestHex(blob_digest));
}

std::vector<std::string> Eviction::BlobsWithDecodedFiles() {
  std::vector<std::string> out;
  ForEachBlobDirEntry(store_->root(), [&](std::string_view name) {
    if (std::string_view hex = DecodedFiles::BlobHexOfDir(name); !hex.empty())
      out.emplace_back(hex);
  });
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::unique_ptr<Pin>> Eviction::PinBlobs(const std::vector<std::string>& blob_digests) {
  std::string body;
  for (const std::string& d : blob_digests) {
    IMGFS_RETURN_IF_ERROR(ValidateDigest(d));
    body += d + "\n";
  }
  std::string dir = store_->root() + "/pins";
  IMGFS_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  std::string path = dir + "/" + std::to_string(::getpid()) + "." +
                     std::to_string(pin_counter.fetch_add(1));
  // Written and locked under a temporary name, then renamed: an evictor never sees a pin file
  // that is not locked yet and takes it for a dead one.
  std::string temp = path + ".tmp";
  int fd = ::open(temp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("cannot create pin file", temp, errno);
  Status s;
  if (::flock(fd, LOCK_SH) != 0) {
    s = ErrnoStatus("cannot lock pin file", temp, errno);
  } else {
    s = WriteFull(fd, body).WithContext("writing pin file " + temp);
  }
  if (s.ok() && ::rename(temp.c_str(), path.c_str()) != 0) {
    s = ErrnoStatus("cannot rename pin file to", path, errno);
  }
  if (!s.ok()) {
    ::unlink(temp.c_str());
    ::close(fd);
    return s;
  }
  return std::unique_ptr<Pin>(new PinFile(fd, path));
}

Result<std::set<std::string>> Eviction::PinnedBlobs() {
  std::set<std::string> pinned;
  std::string dir = store_->root() + "/pins";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return pinned;  // nothing was ever pinned
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name[0] == '.' || name.size() < 4 || name.substr(name.size() - 4) == ".tmp") continue;
    std::string path = dir + "/" + e->d_name;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // its owner just removed it
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      // Nobody holds it: its owner is gone.
      ::unlink(path.c_str());
      ::close(fd);
      continue;
    }
    struct stat st;
    std::string bytes;
    bool read = ::fstat(fd, &st) == 0 &&
                PreadFull(fd, 0, static_cast<uint64_t>(st.st_size), &bytes).ok();
    ::close(fd);
    if (!read) continue;
    size_t pos = 0;
    while (pos < bytes.size()) {
      size_t nl = bytes.find('\n', pos);
      if (nl == std::string::npos) break;
      std::string digest = bytes.substr(pos, nl - pos);
      if (ValidateDigest(digest).ok()) pinned.insert(std::move(digest));
      pos = nl + 1;
    }
  }
  ::closedir(d);
  return pinned;
}

}  // namespace imgfs::cache
