#include "cli/image.h"

#include <sys/stat.h>

#include <algorithm>

#include "cli/cache_usage.h"
#include "cli/layer_indexing.h"
#include "cli/shared_index.h"

namespace imgfs::cli {
namespace {

constexpr int kMaxSymlinks = 40;  // Linux's MAXSYMLINKS
constexpr size_t kReadPiece = 1 << 20;

std::vector<std::string> Components(std::string_view path) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > pos) out.emplace_back(path.substr(pos, slash - pos));
    pos = slash + 1;
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<OpenedImage>> OpenImage(const Target& target, const CommonOptions& common) {
  auto out = std::make_unique<OpenedImage>();
  IMGFS_ASSIGN_OR_RETURN(out->cache, OpenCacheForWriting(common));
  registry::ClientOptions client_options = DefaultClientOptions(common);
  client_options.cancel = &out->cancel;
  out->client = std::make_unique<registry::Client>(client_options);
  IMGFS_ASSIGN_OR_RETURN(out->image, ResolveImage(target.ref, target.platform, target.policy,
                                                  out->client.get(), out->cache.get()));
  IMGFS_RETURN_IF_ERROR(CheckPlatform(out->image, target));
  // Before any layer is fetched: a size limit must not evict what is being indexed or read.
  IMGFS_ASSIGN_OR_RETURN(out->pin, PinLayers(*out->cache, out->image.parsed.layers));
  out->registry_source = std::make_unique<RegistryBlobSource>(out->client.get(), target.ref);
  out->source = std::make_unique<MeteredBlobSource>(out->registry_source.get());
  // The indexes this host built are read once, first; layers it has not indexed yet may have
  // a shared index (cli/shared_index.h).
  std::vector<std::shared_ptr<const fs::LayerIndex>> cached = LoadCachedLayers(
      out->image.parsed, out->image.diff_ids, out->cache.get());
  FoundIndexes shared = FindSharedIndexes(*out->client, out->image, *out->cache,
                                          common.trust_index_from, &cached);
  for (size_t i = 0; i < cached.size() && i < shared.layers.size(); ++i) {
    if (cached[i]) shared.layers[i] = std::move(cached[i]);  // borrowed[i] stays false
  }
  out->shared_index = shared.artifact;
  IMGFS_ASSIGN_OR_RETURN(out->layers,
                         IndexLayers(out->image.parsed, out->image.diff_ids, out->cache.get(),
                                     out->source.get(), &out->cancel, &shared.layers));
  IMGFS_ASSIGN_OR_RETURN(out->tree, fs::Tree::Build(out->layers));
  out->image_layers = std::make_shared<const fs::ImageLayers>(out->layers, out->image.diff_ids,
                                                              shared.borrowed);
  out->reader = std::make_unique<fs::ContentReader>(out->image_layers, out->cache.get(),
                                                    out->source.get());
  return out;
}

Result<uint64_t> ResolvePath(const fs::Tree& tree, std::string_view path, bool follow_last) {
  std::vector<std::string> todo = Components(path);
  std::reverse(todo.begin(), todo.end());             // a stack: next component at the back
  std::vector<uint64_t> dirs = {fs::Tree::kRootIno};  // the directories walked into
  int links = 0;
  while (!todo.empty()) {
    std::string name = std::move(todo.back());
    todo.pop_back();
    if (name == ".") continue;
    if (name == "..") {
      if (dirs.size() > 1) dirs.pop_back();
      continue;
    }
    auto attr = tree.Lookup(dirs.back(), name);
    if (!attr.ok()) {
      return Status::NotFound("no such file or directory in the image: " + std::string(path));
    }
    const bool last = todo.empty();
    if (S_ISLNK(attr->mode) && (!last || follow_last)) {
      if (++links > kMaxSymlinks) {
        return Status::InvalidArgument("too many levels of symbolic links: " + std::string(path));
      }
      IMGFS_ASSIGN_OR_RETURN(std::string target, tree.ReadLink(attr->ino));
      if (!target.empty() && target[0] == '/') dirs.resize(1);
      std::vector<std::string> more = Components(target);
      for (auto it = more.rbegin(); it != more.rend(); ++it) todo.push_back(*it);
      continue;
    }
    if (last) return attr->ino;
    if (!S_ISDIR(attr->mode)) {
      return Status::InvalidArgument("not a directory: " + name + " in " + std::string(path));
    }
    dirs.push_back(attr->ino);
  }
  return dirs.back();
}

Status ReadWholeFile(OpenedImage& image, uint64_t ino,
                     const std::function<Status(std::string_view)>& sink) {
  IMGFS_ASSIGN_OR_RETURN(fs::FileSource file, image.tree->GetFileSource(ino));
  std::string buf(kReadPiece, '\0');
  for (uint64_t off = 0; off < file.size;) {
    IMGFS_ASSIGN_OR_RETURN(size_t n, image.reader->Read(file, off, buf.size(), buf.data()));
    if (n == 0) return Status::Corrupt("the file ended before its size");
    IMGFS_RETURN_IF_ERROR(sink(std::string_view(buf.data(), n)));
    off += n;
  }
  return Status::Ok();
}

}  // namespace imgfs::cli
