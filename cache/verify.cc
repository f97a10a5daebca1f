#include "cache/verify.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <utility>

#include "base/digest.h"
#include "base/log.h"
#include "cache/blob_files.h"
#include "cache/decoded_files.h"
#include "cache/eviction.h"
#include "cache/metadata_store.h"
#include "cache/records.h"
#include "cache/unit_store.h"

namespace imgfs::cache {
namespace {

constexpr uint64_t kHashChunk = uint64_t{1} << 20;

std::string Range(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

// A read-only descriptor of a blob file, closed by the destructor; -1 when it cannot be opened.
class ReadFd {
 public:
  explicit ReadFd(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    err_ = fd_ < 0 ? errno : 0;
  }
  ~ReadFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ReadFd(const ReadFd&) = delete;
  ReadFd& operator=(const ReadFd&) = delete;
  int fd() const { return fd_; }
  int err() const { return err_; }

 private:
  int fd_;
  int err_;
};

// What is wrong with the whole blob file at `path` as blob `digest` of `size` bytes; "" when it
// is exactly that blob. Adds the bytes hashed to `*hashed`.
std::string CheckWholeBlob(const std::string& path, const std::string& digest, uint64_t size,
                           uint64_t* hashed) {
  ReadFd file(path);
  if (file.fd() < 0) return "cannot open its file: " + std::string(std::strerror(file.err()));
  struct stat st;
  if (::fstat(file.fd(), &st) != 0)
    return "cannot stat its file: " + std::string(std::strerror(errno));
  if (static_cast<uint64_t>(st.st_size) != size) {
    return "its file has " + std::to_string(st.st_size) + " bytes, the blob " +
           std::to_string(size);
  }
  Sha256 hasher;
  std::string chunk;
  for (uint64_t off = 0; off < size; off += kHashChunk) {
    uint64_t len = std::min(kHashChunk, size - off);
    Status s = PreadFull(file.fd(), off, len, &chunk);
    if (!s.ok()) return "reading it: " + s.message();
    if (chunk.size() != len) return "its file ends at " + std::to_string(off + chunk.size());
    hasher.Update(chunk);
    *hashed += len;
  }
  std::string actual = hasher.FinishDigest();
  return actual == digest ? "" : "hash to " + actual + ", expected " + digest;
}

// What is wrong with the stored unit at `coff` of `digest` whose record is `value`; "" when it
// passes its check.
std::string CheckUnit(const std::string& path, const std::string& digest, uint64_t coff,
                      std::string_view value, const VerifyHooks& hooks, uint64_t* hashed) {
  std::optional<uint64_t> clen = UnitValueClen(value);
  if (!clen || *clen == 0 || *clen > kMaxUnitBytes) return "its record is damaged";
  ReadFd file(path);
  if (file.fd() < 0) return "cannot open its file: " + std::string(std::strerror(file.err()));
  std::string bytes;
  Status s = PreadFull(file.fd(), coff, *clen, &bytes);
  if (!s.ok()) return "reading it: " + s.message();
  if (bytes.size() != *clen) return "its file ends at " + std::to_string(coff + bytes.size());
  *hashed += bytes.size();
  if (value.size() == 8 + kHexLen) {
    std::string want = "sha256:" + std::string(value.substr(8));
    std::string actual = Sha256Digest(bytes);
    return actual == want ? "" : "hash to " + actual + ", expected " + want;
  }
  if (!hooks.unit_verifier) return "no layer index to check its decoded chunks against";
  Result<VerifyHooks::UnitCheck> check = hooks.unit_verifier(digest, coff, *clen);
  if (!check.ok()) return check.status().message();
  Status verified;
  try {
    verified = (*check)(bytes);
  } catch (const std::exception& e) {
    verified = Status::Internal(std::string("its check threw: ") + e.what());
  }
  return verified.ok() ? "" : "its decoded chunks do not verify: " + verified.message();
}

struct BlobEntry {
  BlobRecord record;
  bool has_record = false;
  std::vector<std::pair<uint64_t, std::string>> units;  // coff, record value
};

}  // namespace

std::string VerifyFailure::ToString() const {
  std::string out = kind == "unit" ? "unit of blob " + key : kind + " " + key;
  if (!range.empty()) out += (kind == "decoded file" ? " " : " bytes ") + range;
  out += ": " + problem;
  out += dropped.ok() ? "; dropped" : "; NOT dropped: " + dropped.ToString();
  return out;
}

Result<VerifyReport> Verifier::Verify(const VerifyHooks& hooks,
                                      const std::function<void(const VerifyFailure&)>& on_failure) {
  VerifyReport report;
  auto fail = [&](VerifyFailure f) {
    IMGFS_LOG(kInfo, "cache " << store_->root() << ": verify: " << f.ToString());
    if (on_failure) on_failure(f);
    report.failures.push_back(std::move(f));
  };
  LmdbEnv& env = store_->env();

  // Small records first: references, documents, layer indexes, each checked inside the read
  // and dropped (if still the same bytes) after it.
  struct Bad {
    Db db;
    std::string key, value, kind, problem;
  };
  std::vector<Bad> bad;
  Status read = env.Read([&](LmdbTxn& txn) {
    bad.clear();
    report.references = report.documents = report.layer_indexes = 0;
    IMGFS_RETURN_IF_ERROR(txn.Scan(Db::kRefs, "", [&](std::string_view k, std::string_view v) {
      ++report.references;
      if (!DecodeReference(v)) {
        bad.push_back({Db::kRefs, std::string(k), std::string(v), "reference",
                       "its record does not name a valid manifest digest"});
      }
      return true;
    }));
    IMGFS_RETURN_IF_ERROR(txn.Scan(Db::kDocs, "", [&](std::string_view k, std::string_view v) {
      ++report.documents;
      if (!ValidateDigest(k).ok()) {
        bad.push_back(
            {Db::kDocs, std::string(k), std::string(v), "document", "its key is not a digest"});
      } else if (!DecodeDocument(k, v)) {
        std::string problem = "its record is damaged";
        if (v.size() >= 2) {
          size_t type_len = (static_cast<unsigned char>(v[0]) << 8) |
                            static_cast<unsigned char>(v[1]);
          if (v.size() >= 2 + type_len) {
            problem = "hashes to " + Sha256Digest(v.substr(2 + type_len)) + ", expected " +
                      std::string(k);
          }
        }
        bad.push_back({Db::kDocs, std::string(k), std::string(v), "document", problem});
      }
      return true;
    }));
    return txn.Scan(Db::kLayers, "", [&](std::string_view k, std::string_view v) {
      ++report.layer_indexes;
      std::string digest = "sha256:" + std::string(k);
      std::optional<std::string_view> serialized = DecodeLayerIndex(v);
      std::string problem;
      if (!ValidateDigest(digest).ok()) {
        problem = "its key is not a blob digest";
      } else if (!serialized) {
        problem = "its checksum does not match";
      } else if (hooks.check_layer_index) {
        Status s = hooks.check_layer_index(digest, *serialized);
        if (!s.ok()) problem = "unreadable: " + s.message();
      }
      if (!problem.empty()) {
        bad.push_back(
            {Db::kLayers, std::string(k), std::string(v), "layer index of blob", problem});
      }
      return true;
    });
  });
  IMGFS_RETURN_IF_ERROR(read);
  for (const Bad& b : bad) {
    std::string key = b.db == Db::kLayers ? "sha256:" + b.key : b.key;
    fail({b.kind, key, "", b.problem, metadata_->DropCorrupt(b.db, b.key, b.value)});
  }

  // Then the bytes: each blob whole when it is complete, else unit by unit.
  std::map<std::string, BlobEntry> blobs;  // by hex
  read = env.Read([&](LmdbTxn& txn) {
    blobs.clear();
    IMGFS_RETURN_IF_ERROR(txn.Scan(Db::kBlobs, "", [&](std::string_view k, std::string_view v) {
      BlobEntry& e = blobs[std::string(k)];
      e.record = DecodeBlobRecord(v);
      e.has_record = true;
      return true;
    }));
    return txn.Scan(Db::kUnits, "", [&](std::string_view k, std::string_view v) {
      if (k.size() == kHexLen + 8) {
        blobs[std::string(k.substr(0, kHexLen))].units.emplace_back(ReadU64(k, kHexLen), v);
      }
      return true;
    });
  });
  IMGFS_RETURN_IF_ERROR(read);
  for (const auto& [hex, entry] : blobs) {
    const std::string digest = "sha256:" + hex;
    if (!ValidateDigest(digest).ok()) continue;  // not a key the cache writes
    const std::string path = store_->files().PathOf(hex);
    if (entry.has_record && entry.record.complete) {
      ++report.complete_blobs;
      std::string problem = CheckWholeBlob(path, digest, entry.record.size, &report.bytes);
      // A commit in another process may have replaced the file meanwhile: look once more.
      if (!problem.empty())
        problem = CheckWholeBlob(path, digest, entry.record.size, &report.bytes);
      if (!problem.empty()) {
        fail({"blob", digest, Range(0, entry.record.size), problem, eviction_->DropBlob(digest)});
      }
      continue;
    }
    for (const auto& [coff, value] : entry.units) {
      ++report.units;
      std::string problem = CheckUnit(path, digest, coff, value, hooks, &report.bytes);
      if (!problem.empty()) problem = CheckUnit(path, digest, coff, value, hooks, &report.bytes);
      if (problem.empty()) continue;
      uint64_t clen = UnitValueClen(value).value_or(0);
      Status dropped = eviction_->PunchUnit(digest, coff);
      if (dropped.IsNotFound()) dropped = Status::Ok();  // another process dropped it first
      fail({"unit", digest, Range(coff, coff + clen), problem, dropped});
    }
  }
  // Decoded files (cache/decoded_files.h), of every blob that has a directory of them: each
  // against the digest written beside it. They are derived bytes: a failing one is removed.
  // Hashed as a whole blob is (CheckWholeBlob), against the digest written beside it.
  const DecodedFiles decoded(store_->root());
  for (const std::string& hex : eviction_->BlobsWithDecodedFiles()) {
    const std::string dir = decoded.DirOf(hex);
    for (const std::string& name : decoded.Files(hex)) {
      const std::string path = dir + "/" + name;
      struct stat st;
      if (::lstat(path.c_str(), &st) != 0) continue;  // removed meanwhile
      ++report.decoded_files;
      std::optional<std::string> want = DecodedFiles::StoredDigest(path);
      std::string problem = !S_ISREG(st.st_mode) ? "not a regular file"
                            : want ? CheckWholeBlob(path, *want, static_cast<uint64_t>(st.st_size),
                                                    &report.bytes)
                                   : std::string("no valid ") + DecodedFiles::kDigestXattr +
                                         " attribute";
      if (problem.empty()) continue;
      Status dropped = ::unlink(path.c_str()) == 0 || errno == ENOENT
                           ? Status::Ok()
                           : ErrnoStatus("cannot remove", path, errno);
      fail({"decoded file", "sha256:" + hex, name, problem, dropped});
    }
  }
  return report;
}

}  // namespace imgfs::cache
