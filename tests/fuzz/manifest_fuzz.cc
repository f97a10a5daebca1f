// Manifest and index bodies as a registry sends them (registry/manifest.h), classified under
// each Content-Type a registry may give, parsed both ways, and an index's platform chosen.
// Invariants: errors are kCorrupt/kUnsupported/kInvalidArgument; every digest in an accepted
// manifest or index is a valid sha256 digest.
#include "base/digest.h"
#include "registry/manifest.h"
#include "tests/fuzz/fuzz_support.h"

namespace imgfs::fuzz {
namespace {

void CheckDescriptor(const registry::Descriptor& d) {
  FUZZ_CHECK(ValidateDigest(d.digest).ok(), d.digest);
}

void Run(std::string_view body) {
  for (std::string_view content_type :
       {std::string_view(), registry::kOciIndex, registry::kOciManifest,
        registry::kDockerManifestList, registry::kDockerManifest, registry::kDockerSchema1,
        std::string_view("application/json; charset=utf-8")}) {
    auto kind = registry::ClassifyManifest(body, content_type);
    if (!kind.ok()) FUZZ_CHECK(IsInputError(kind.status()), kind.status().ToString());
  }
  auto manifest = registry::ParseImageManifest(body);
  if (manifest.ok()) {
    CheckDescriptor(manifest->config);
    for (const auto& layer : manifest->layers) CheckDescriptor(layer);
  } else {
    FUZZ_CHECK(IsInputError(manifest.status()), manifest.status().ToString());
  }
  auto index = registry::ParseImageIndex(body);
  if (index.ok()) {
    for (const auto& m : index->manifests) CheckDescriptor(m);
    for (const char* want : {"linux/amd64", "linux/arm64/v8", "linux/arm/v7"}) {
      auto platform = registry::Platform::Parse(want);
      FUZZ_CHECK(platform.ok(), want);
      auto chosen = registry::SelectPlatform(*index, *platform);
      if (chosen.ok()) {
        CheckDescriptor(*chosen);
      } else {
        FUZZ_CHECK(chosen.status().code() == Code::kNotFound, chosen.status().ToString());
      }
    }
  } else {
    FUZZ_CHECK(IsInputError(index.status()), index.status().ToString());
  }
}

}  // namespace
}  // namespace imgfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  imgfs::fuzz::Run(imgfs::fuzz::AsView(data, size));
  return 0;
}
