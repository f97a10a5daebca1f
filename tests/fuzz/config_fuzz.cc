// Image config blobs (config.json) as a registry sends them: the rootfs.diff_ids every mount
// checks its layers against (registry/manifest.h) and the platform fields the resolver reads
// (registry/resolve.h). Invariants: errors are kCorrupt; every accepted diff_id is a valid
// sha256 digest; a platform read from a config has a non-empty os and architecture.
#include "base/digest.h"
#include "registry/manifest.h"
#include "registry/resolve.h"
#include "tests/fuzz/fuzz_support.h"

namespace imgfs::fuzz {
namespace {

void Run(std::string_view body) {
  auto diff_ids = registry::ParseConfigDiffIds(body);
  if (diff_ids.ok()) {
    for (const std::string& id : *diff_ids) FUZZ_CHECK(ValidateDigest(id).ok(), id);
  } else {
    FUZZ_CHECK(diff_ids.status().code() == Code::kCorrupt, diff_ids.status().ToString());
  }
  auto platform = registry::PlatformOfConfig(body);
  if (platform.has_value()) {
    FUZZ_CHECK(!platform->os.empty() && !platform->architecture.empty(), platform->String());
  }
}

}  // namespace
}  // namespace imgfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  imgfs::fuzz::Run(imgfs::fuzz::AsView(data, size));
  return 0;
}
