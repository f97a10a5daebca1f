// `imgfs index push` and `imgfs index convert` (cli/shared_index.h, docs/index-format.md).
#include <iostream>

#include "cache/cache.h"
#include "cli/cache_usage.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/shared_index.h"

namespace imgfs::cli {
namespace {

struct Resolved {
  std::unique_ptr<cache::Cache> cache;
  std::unique_ptr<registry::Client> client;
  registry::ResolvedImage image;
};

Result<Resolved> ResolveForIndex(const IndexOptions& options) {
  IMGFS_ASSIGN_OR_RETURN(Target target, ParseTarget(options.image, options.common));
  Resolved out;
  IMGFS_ASSIGN_OR_RETURN(out.cache, OpenCacheForWriting(options.common));
  out.client = std::make_unique<registry::Client>(DefaultClientOptions(options.common));
  IMGFS_ASSIGN_OR_RETURN(out.image, ResolveImage(target.ref, target.platform, target.policy,
                                                 out.client.get(), out.cache.get()));
  IMGFS_RETURN_IF_ERROR(CheckPlatform(out.image, target));
  return out;
}

// NEWREF: a tag, or REPO:TAG naming the image's own repository (the blobs are there).
Result<std::string> NewTag(const std::string& new_ref, const registry::Reference& image) {
  if (new_ref.find('/') == std::string::npos && new_ref.find(':') == std::string::npos &&
      new_ref.find('@') == std::string::npos && !new_ref.empty()) {
    return new_ref;
  }
  IMGFS_ASSIGN_OR_RETURN(registry::Reference ref, registry::Reference::Parse(new_ref));
  if (ref.domain != image.domain || ref.repository != image.repository || !ref.digest.empty() ||
      ref.tag.empty()) {
    return Status::InvalidArgument("NEWREF '" + new_ref + "' must be a tag of " + image.Repo() +
                                   " (the image's blobs are there)");
  }
  return ref.tag;
}

}  // namespace

int RunIndexPush(const IndexOptions& options) {
  Result<Resolved> r = ResolveForIndex(options);
  if (!r.ok()) return Fail(r.status());
  Result<PushedIndexes> pushed = PushSharedIndexes(*r->client, r->image, *r->cache);
  if (!pushed.ok()) return Fail(pushed.status());
  std::cout << "Pushed the indexes of " << pushed->layers << " layer(s) of "
            << FamiliarString(r->image.ref) << " as " << pushed->artifact.digest
            << (pushed->tag_schema ? " (referrers tag updated)" : "") << "\n";
  return 0;
}

int RunIndexConvert(const IndexOptions& options) {
  Result<Resolved> r = ResolveForIndex(options);
  if (!r.ok()) return Fail(r.status());
  Result<std::string> tag = NewTag(options.new_ref, r->image.ref);
  if (!tag.ok()) return Fail(tag.status());
  Result<std::string> digest = ConvertImage(*r->client, r->image, *r->cache, *tag);
  if (!digest.ok()) return Fail(digest.status());
  std::cout << r->image.ref.Repo() << ":" << *tag << "@" << *digest << "\n";
  return 0;
}

}  // namespace imgfs::cli
