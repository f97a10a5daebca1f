// MetadataStore: the small records of the cache index (refs, docs, layers), behind the Cache
// methods of the same names (cache/cache.h has their contracts).
//
// Every record is checked when read (a document re-hashed, a layer index against its checksum,
// a reference's digest validated); a damaged one is deleted, if it is still the same bytes,
// and reported as a miss.
//
// Thread-safety: all methods may be called from many threads at once. `env` is borrowed.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "cache/cache.h"
#include "cache/lmdb_env.h"

namespace imgfs::cache {

class MetadataStore {
 public:
  MetadataStore(LmdbEnv* env, std::string root) : env_(env), root_(std::move(root)) {}

  Status PutReference(std::string_view ref, std::string_view manifest_digest);
  Result<ReferenceRecord> GetReference(std::string_view ref);
  Result<std::vector<std::pair<std::string, ReferenceRecord>>> ListReferences(
      std::string_view prefix);
  Status DeleteReference(std::string_view ref);
  Status PutDocument(std::string_view digest, std::string_view media_type, std::string_view bytes);
  Result<Document> GetDocument(std::string_view digest);
  Status PutLayerIndex(std::string_view blob_digest, std::string_view serialized);
  Result<std::string> GetLayerIndex(std::string_view blob_digest);

  // Deletes `key` of `db` if it still holds `bad` (another process may have fixed it). A
  // failure is logged and returned; readers ignore it (the record stays a miss to them).
  Status DropCorrupt(Db db, std::string_view key, std::string_view bad);

 private:
  // The value of `key`; kNotFound (empty message) when absent.
  Result<std::string> Get(Db db, std::string_view key);

  // Constant after construction.
  LmdbEnv* const env_;
  const std::string root_;
};

}  // namespace imgfs::cache
