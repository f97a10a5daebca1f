// RegistryBlobSource: the cache's BlobSource served by one repository of a registry.
//
// This is the one place where `cache` and `registry` meet (DESIGN.md: cli wires them). It
// adds nothing but the translation: the cache verifies every byte it gets from here.
//
// Thread-safety: as registry::Client (safe for concurrent use). Does not own the client.
#pragma once

#include <map>

#include "base/blob_source.h"
#include "base/mutex.h"
#include "registry/client.h"
#include "registry/reference.h"

namespace imgfs::cli {

class RegistryBlobSource : public BlobSource {
 public:
  RegistryBlobSource(registry::Client* client, registry::Reference repo)
      : client_(client), repo_(std::move(repo)) {}

  Status ReadRange(std::string_view digest, uint64_t offset, uint64_t length,
                   std::string* out) override {
    return client_->GetBlobRange(repo_, digest, offset, length, out);
  }

  Status ReadAll(std::string_view digest,
                 const std::function<Status(std::string_view)>& sink) override {
    return client_->GetBlob(repo_, digest, sink);
  }

 private:
  registry::Client* const client_;
  const registry::Reference repo_;
};

}  // namespace imgfs::cli

namespace imgfs::cli {

// Counts what passes through another BlobSource, per blob: the bytes a mount really fetched
// from the registry (what `imgfs stats` reports; the cache's hits never come here).
// Thread-safe. Does not own `inner`.
class MeteredBlobSource : public BlobSource {
 public:
  struct Counts {
    uint64_t bytes = 0;
    uint64_t requests = 0;
  };

  explicit MeteredBlobSource(BlobSource* inner) : inner_(inner) {}

  Status ReadRange(std::string_view digest, uint64_t offset, uint64_t length,
                   std::string* out) override {
    size_t before = out->size();
    Status s = inner_->ReadRange(digest, offset, length, out);
    Add(digest, out->size() - before);
    return s;
  }

  Status ReadAll(std::string_view digest,
                 const std::function<Status(std::string_view)>& sink) override {
    uint64_t bytes = 0;
    Status s = inner_->ReadAll(digest, [&](std::string_view piece) {
      bytes += piece.size();
      return sink(piece);
    });
    Add(digest, bytes);
    return s;
  }

  Counts Get(std::string_view digest) const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    auto it = counts_.find(std::string(digest));
    return it == counts_.end() ? Counts{} : it->second;
  }

 private:
  void Add(std::string_view digest, uint64_t bytes) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    Counts& c = counts_[std::string(digest)];
    c.bytes += bytes;
    c.requests += 1;
  }

  // Constant after construction.
  BlobSource* const inner_;

  // State below is protected by mu_.
  mutable Mutex mu_;
  std::map<std::string, Counts> counts_ GUARDED_BY(mu_);
};

}  // namespace imgfs::cli
