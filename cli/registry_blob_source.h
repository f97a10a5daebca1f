// RegistryBlobSource: the cache's BlobSource served by one repository of a registry.
//
// This is the one place where `cache` and `registry` meet (DESIGN.md: cli wires them). It
// adds nothing but the translation: the cache verifies every byte it gets from here.
//
// Thread-safety: as registry::Client (safe for concurrent use). Does not own the client.
#pragma once

#include "cache/blob_source.h"
#include "registry/client.h"
#include "registry/reference.h"

namespace imgfs::cli {

class RegistryBlobSource : public cache::BlobSource {
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
