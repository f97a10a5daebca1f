// imgfs rmi: forgets pulled images (commands.h). Only records go, the resolver's record of
// the tag too (as after docker rmi, the next mount asks the registry): the bytes stay for
// other images until `imgfs cache gc` drops what no image uses.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"

namespace imgfs::cli {

int RunRmi(const RmiOptions& options) {
  auto cache = cache::Cache::Open(CacheRoot(options.common));
  if (!cache.ok()) return Fail(cache.status());
  int status = 0;
  for (const std::string& arg : options.images) {
    auto ref = registry::Reference::Parse(arg);
    auto record = ref.ok() ? (*cache)->GetReference(PulledKey(*ref)) : ref.status();
    if (!record.ok()) {
      status = Fail(Status::NotFound("No such image: " + arg));
      continue;
    }
    if (Status s = (*cache)->DeleteReference(PulledKey(*ref)); !s.ok()) {
      status = Fail(s);
      continue;
    }
    std::printf("Untagged: %s\n", FamiliarString(*ref).c_str());
    if (ref->tag.empty()) continue;
    // The resolver's record of what the tag named (image_resolver.h); absent is fine.
    if (Status s = (*cache)->DeleteReference(TagKey(*ref)); !s.ok()) {
      status = Fail(s);
    }
    // The digest form goes with the image's last tag, as in docker.
    auto others = (*cache)->ListReferences(std::string(kPulledPrefix) + ref->Repo() + ":");
    bool still_tagged = false;
    if (others.ok()) {
      for (const auto& [key, other] : *others) {
        still_tagged = still_tagged || other.manifest_digest == record->manifest_digest;
      }
    }
    if (still_tagged || !others.ok()) continue;
    registry::Reference by_digest = *ref;
    by_digest.tag.clear();
    by_digest.digest = record->manifest_digest;
    if ((*cache)->GetReference(PulledKey(by_digest)).ok() &&
        (*cache)->DeleteReference(PulledKey(by_digest)).ok()) {
      std::printf("Untagged: %s\n", FamiliarString(by_digest).c_str());
    }
  }
  return status;
}

}  // namespace imgfs::cli
