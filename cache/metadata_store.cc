#include "cache/metadata_store.h"

#include "base/digest.h"
#include "base/log.h"
#include "cache/records.h"

namespace imgfs::cache {

Result<std::string> MetadataStore::Get(Db db, std::string_view key) {
  std::string value;
  Status s = env_->Read([&](LmdbTxn& txn) { return txn.Get(db, key, &value); });
  if (!s.ok()) return s;
  return value;
}

Status MetadataStore::PutReference(std::string_view ref, std::string_view manifest_digest) {
  if (ref.empty() || ref.size() > env_->max_key_size()) {
    return Status::InvalidArgument("reference '" + std::string(ref) +
                                   "' is empty or too long to cache");
  }
  IMGFS_RETURN_IF_ERROR(ValidateDigest(manifest_digest));
  std::string value = EncodeReference({std::string(manifest_digest), NowUnix()});
  return env_->Write([&](LmdbTxn& txn) { return txn.Put(Db::kRefs, ref, value); });
}

Result<ReferenceRecord> MetadataStore::GetReference(std::string_view ref) {
  if (ref.empty() || ref.size() > env_->max_key_size()) {
    return Status::NotFound("reference '" + std::string(ref) + "' is not in the cache");
  }
  Result<std::string> value = Get(Db::kRefs, ref);
  if (value.status().IsNotFound()) {
    return Status::NotFound("reference " + std::string(ref) + " is not in the cache " + root_);
  }
  IMGFS_RETURN_IF_ERROR(value.status());
  std::optional<ReferenceRecord> record = DecodeReference(*value);
  if (!record) {
    IMGFS_LOG(kWarning, "cache " << root_ << ": dropping a damaged record for reference " << ref);
    (void)DropCorrupt(Db::kRefs, ref, *value);
    return Status::NotFound("reference " + std::string(ref) +
                            " is not in the cache (a damaged record was dropped)");
  }
  return std::move(*record);
}

Result<std::vector<std::pair<std::string, ReferenceRecord>>> MetadataStore::ListReferences(
    std::string_view prefix) {
  std::vector<std::pair<std::string, ReferenceRecord>> out;
  IMGFS_RETURN_IF_ERROR(env_->Read([&](LmdbTxn& txn) {
    out.clear();  // the body may run again
    return txn.Scan(Db::kRefs, prefix, [&](std::string_view key, std::string_view value) {
      if (key.substr(0, prefix.size()) != prefix) return false;
      if (std::optional<ReferenceRecord> record = DecodeReference(value)) {
        out.emplace_back(std::string(key), std::move(*record));
      }
      return true;
    });
  }));
  return out;
}

Status MetadataStore::DeleteReference(std::string_view ref) {
  if (ref.empty() || ref.size() > env_->max_key_size()) return Status::Ok();
  return env_->Write([&](LmdbTxn& txn) { return txn.Delete(Db::kRefs, ref); });
}

Status MetadataStore::PutDocument(std::string_view digest, std::string_view media_type,
                                  std::string_view bytes) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(digest));
  std::string actual = Sha256Digest(bytes);
  if (actual != digest) {
    return Status::DigestMismatch("document " + std::string(digest) + " hashes to " + actual +
                                  "; not cached");
  }
  if (media_type.size() > 0xffff) return Status::InvalidArgument("media type too long");
  std::string value = EncodeDocument(media_type, bytes);
  return env_->Write([&](LmdbTxn& txn) { return txn.Put(Db::kDocs, digest, value); });
}

Result<Document> MetadataStore::GetDocument(std::string_view digest) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(digest));
  Result<std::string> value = Get(Db::kDocs, digest);
  if (value.status().IsNotFound()) {
    return Status::NotFound("document " + std::string(digest) + " is not cached");
  }
  IMGFS_RETURN_IF_ERROR(value.status());
  std::optional<Document> doc = DecodeDocument(digest, *value);
  if (!doc) {
    IMGFS_LOG(kWarning, "cache " << root_ << ": document " << digest
                                 << " is corrupt in the index; dropping it");
    (void)DropCorrupt(Db::kDocs, digest, *value);
    return Status::NotFound("document " + std::string(digest) +
                            " is not cached (a corrupt copy was dropped)");
  }
  return std::move(*doc);
}

Status MetadataStore::PutLayerIndex(std::string_view blob_digest, std::string_view serialized) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(blob_digest));
  std::string value = EncodeLayerIndex(serialized);
  std::string_view hex = DigestHex(blob_digest);
  return env_->Write([&](LmdbTxn& txn) { return txn.Put(Db::kLayers, hex, value); });
}

Result<std::string> MetadataStore::GetLayerIndex(std::string_view blob_digest) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(blob_digest));
  std::string_view hex = DigestHex(blob_digest);
  // Checked on LMDB's own copy (its map) and copied out once: an index is MiBs.
  std::string serialized;
  std::string damaged;
  bool is_damaged = false;
  Status read = env_->Read([&](LmdbTxn& txn) {
    is_damaged = false;  // the body may run again
    serialized.clear();
    damaged.clear();
    return txn.Visit(Db::kLayers, hex, [&](std::string_view value) {
      if (std::optional<std::string_view> index = DecodeLayerIndex(value)) {
        serialized.assign(*index);
      } else {
        is_damaged = true;
        damaged.assign(value);
      }
    });
  });
  if (read.IsNotFound()) {
    return Status::NotFound("no layer index of " + std::string(blob_digest) + " in the cache");
  }
  IMGFS_RETURN_IF_ERROR(read);
  if (is_damaged) {
    IMGFS_LOG(kWarning, "cache " << root_ << ": layer index of " << blob_digest
                                 << " is corrupt in the index; dropping it");
    (void)DropCorrupt(Db::kLayers, hex, damaged);
    return Status::NotFound("no layer index of " + std::string(blob_digest) +
                            " in the cache (a corrupt copy was dropped)");
  }
  return serialized;
}

Status MetadataStore::DropCorrupt(Db db, std::string_view key, std::string_view bad) {
  Status s = env_->Write([&](LmdbTxn& txn) {
    std::string now;
    Status got = txn.Get(db, key, &now);
    if (got.IsNotFound()) return Status::Ok();
    IMGFS_RETURN_IF_ERROR(got);
    if (now != bad) return Status::Ok();
    return txn.Delete(db, key);
  });
  if (!s.ok()) IMGFS_LOG(kWarning, "dropping a corrupt record failed: " << s.ToString());
  return s;
}

}  // namespace imgfs::cache
