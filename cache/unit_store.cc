#include "cache/unit_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/buffer_pool.h"
#include "base/digest.h"
#include "base/log.h"
#include "cache/blob_writer.h"

namespace imgfs::cache {
namespace {

// Access times feed LRU eviction (cache/eviction.h); minute resolution is plenty and keeps the
// read path free of write transactions.
constexpr auto kAccessInterval = std::chrono::seconds(60);
constexpr size_t kOpenBlobFiles = 64;

}  // namespace

Status UpdateBlobRecord(LmdbTxn& txn, std::string_view hex,
                        const std::function<void(BlobRecord*)>& fn) {
  std::string old;
  Status s = txn.Get(Db::kBlobs, hex, &old);
  if (!s.ok() && !s.IsNotFound()) return s;
  BlobRecord r = s.ok() ? DecodeBlobRecord(old) : BlobRecord();
  fn(&r);
  return txn.Put(Db::kBlobs, hex, EncodeBlobRecord(r));
}

UnitStore::UnitStore(LmdbEnv* env, std::string root)
    : env_(env), root_(std::move(root)), files_(root_, kOpenBlobFiles) {}

Result<bool> UnitStore::IsPublished(const UnitRef& unit) {
  return IsPublished(unit.blob, unit.coff, unit.clen, &unit);
}

Result<bool> UnitStore::IsPublished(std::string_view blob, uint64_t coff, uint64_t clen,
                                    const UnitRef* unit) {
  std::string_view hex = DigestHex(blob);
  std::string key = UnitKey(hex, coff);
  bool present = false;
  Status s = env_->Read([&](LmdbTxn& txn) {
    present = false;
    std::string value;
    Status got = txn.Get(Db::kBlobs, hex, &value);
    if (got.ok()) {
      BlobRecord r = DecodeBlobRecord(value);
      // A range past the end of a complete blob is a bad UnitRef, not a damaged store: it
      // must not cost the blob its complete flag.
      if (r.complete && coff + clen <= r.size) {
        present = true;
        return Status::Ok();
      }
    } else if (!got.IsNotFound()) {
      return got;
    }
    got = txn.Get(Db::kUnits, key, &value);
    if (got.ok()) {
      present = unit != nullptr ? UnitValueMatches(value, *unit) : UnitValueClen(value) == clen;
    }
    return got.IsNotFound() ? Status::Ok() : got;
  });
  IMGFS_RETURN_IF_ERROR(s);
  return present;
}

Result<std::optional<std::string>> UnitStore::ReadStored(const UnitRef& unit) {
  IMGFS_ASSIGN_OR_RETURN(bool published, IsPublished(unit));
  if (!published) return std::optional<std::string>();
  std::string_view hex = DigestHex(unit.blob);
  // A kept buffer (base/buffer_pool.h): the reader gives it back once the unit is decoded.
  std::string bytes = UnitBuffers().Take(unit.clen);
  std::string actual;
  for (int attempt = 0; attempt < 2; ++attempt) {
    IMGFS_ASSIGN_OR_RETURN(std::shared_ptr<BlobFd> file, files_.Get(hex));
    Status s = PreadFull(file->fd(), unit.coff, unit.clen, &bytes);
    if (!s.ok()) {
      actual = s.ToString();
    } else if (bytes.size() != unit.clen) {
      actual = "a short file (" + std::to_string(bytes.size()) + " bytes)";
    } else if (unit.trust_store && attempt == 0 && IsBlobFile(*file, hex)) {
      // Verified when published. Published still, now that the bytes are read, means no
      // eviction punched them meanwhile (records go before bytes).
      IMGFS_ASSIGN_OR_RETURN(bool still, IsPublished(unit));
      if (!still) return std::optional<std::string>();
      return std::optional<std::string>(std::move(bytes));
    } else if (VerifyUnitBytes(unit, bytes, &actual)) {
      return std::optional<std::string>(std::move(bytes));
    }
    // The blob file may have been replaced by a committed BlobWriter since the descriptor was
    // opened: look again through a fresh one before calling the store corrupt.
    files_.Forget(hex);
  }
  IMGFS_LOG(kWarning, Prefix() << "stored unit " << RangeText(unit) << " of blob " << unit.blob
                               << " is corrupt (expected " << Expectation(unit) << ", found "
                               << actual << "); dropping it and fetching it again");
  IMGFS_RETURN_IF_ERROR(Unpublish(unit));
  return std::optional<std::string>();
}

bool UnitStore::IsBlobFile(const BlobFd& file, std::string_view hex) const {
  struct stat open_file, named;
  if (::fstat(file.fd(), &open_file) != 0) return false;
  if (::stat(files_.PathOf(hex).c_str(), &named) != 0) return false;
  return open_file.st_dev == named.st_dev && open_file.st_ino == named.st_ino;
}

Status UnitStore::Unpublish(const UnitRef& unit) {
  std::string_view hex = DigestHex(unit.blob);
  std::string key = UnitKey(hex, unit.coff);
  return env_->Write([&](LmdbTxn& txn) {
    std::string value;
    Status got = txn.Get(Db::kUnits, key, &value);
    if (got.ok() && UnitValueMatches(value, unit)) {
      IMGFS_RETURN_IF_ERROR(txn.Delete(Db::kUnits, key));
    } else if (!got.ok() && !got.IsNotFound()) {
      return got;
    }
    got = txn.Get(Db::kBlobs, hex, &value);
    if (got.IsNotFound()) return Status::Ok();
    IMGFS_RETURN_IF_ERROR(got);
    BlobRecord r = DecodeBlobRecord(value);
    if (!r.complete) return Status::Ok();
    r.complete = false;
    return txn.Put(Db::kBlobs, hex, EncodeBlobRecord(r));
  });
}

Status UnitStore::Store(const UnitRef& unit, std::string_view bytes) {
  std::string_view hex = DigestHex(unit.blob);
  IMGFS_ASSIGN_OR_RETURN(std::shared_ptr<BlobFd> file, files_.Get(hex));
  std::string path = files_.PathOf(hex);
  Status s = PwriteFull(file->fd(), unit.coff, bytes);
  if (!s.ok()) return s.WithContext(Prefix() + path);
  // The bytes must be durable before the index says they are there.
  if (::fdatasync(file->fd()) != 0) return ErrnoStatus(Prefix() + "fdatasync", path, errno);

  std::string key = UnitKey(hex, unit.coff);
  std::string value = UnitValue(unit.clen, UnitShaHex(unit));
  int64_t now = NowUnix();
  s = env_->Write([&](LmdbTxn& txn) {
    IMGFS_RETURN_IF_ERROR(txn.Put(Db::kUnits, key, value));
    return UpdateBlobRecord(txn, hex, [&](BlobRecord* r) { r->access_unix = now; });
  });
  if (!s.ok()) return s.WithContext("publishing unit " + RangeText(unit) + " of " + unit.blob);
  NoteAccessWritten(hex);
  NoteWritten(unit.clen);
  return Status::Ok();
}

void UnitStore::NoteAccessWritten(std::string_view hex) {
  MutexLock lock(&access_mu_);
  access_written_[std::string(hex)] = std::chrono::steady_clock::now();
}

void UnitStore::TouchBlob(std::string_view hex) {
  auto now = std::chrono::steady_clock::now();
  {
    MutexLock lock(&access_mu_);
    auto [it, inserted] = access_written_.try_emplace(std::string(hex), now);
    if (!inserted) {
      if (now - it->second < kAccessInterval) return;
      it->second = now;
    }
  }
  int64_t now_unix = NowUnix();
  Status s = env_->Write([&](LmdbTxn& txn) {
    return UpdateBlobRecord(txn, hex, [&](BlobRecord* r) { r->access_unix = now_unix; });
  });
  // Access times only steer eviction; a failure to record one must not fail a read.
  if (!s.ok()) IMGFS_LOG(kDebug, "recording an access time: " << s.ToString());
}

Result<std::unique_ptr<BlobWriter>> UnitStore::CreateBlobWriter(
    std::string_view blob_digest, uint64_t size, std::shared_ptr<const void> keep_alive) {
  return NewBlobWriter(this, blob_digest, size, std::move(keep_alive));
}

}  // namespace imgfs::cache
