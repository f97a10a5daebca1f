// `imgfs store`: the additional layer store podman reads (fs/fuse/store_fs.h), with layers
// resolved through the registry and the shared cache, as `imgfs mount` resolves images.
//
// Per image reference (resolved on the first lookup of one of its layers, under the pull policy
// of --pull: with "missing", a cached manifest answers without the registry): the resolved
// manifest and config and a blob source for its repository. Per layer: its index (cached, as
// for mount), the overlay-format diff built from it, a reader, a prefetcher (--prefetch), the
// `blob` file (cli/store_blob.h: only bytes verified against the layer digest) and a count of
// podman's uses. A layer is pinned in the cache (cache/eviction.h) from its first lookup until
// podman's releases bring its count back to zero; a later use pins it again. The counts are
// kept on disk (cli/store_uses.h): a restarted store pins the layers in use at once and a
// release of a layer not looked up since still finds its count.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/single_flight.h"
#include "cache/eviction.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/daemon.h"
#include "cli/layer_indexing.h"
#include "cli/registry_blob_source.h"
#include "cli/store_blob.h"
#include "cli/store_uses.h"
#include "fs/fuse/store_fs.h"
#include "fs/layer/estargz.h"
#include "fs/layer/layer_builder.h"
#include "fs/layer/zstd_chunked.h"
#include "fs/tree/image_layers.h"
#include "fs/tree/overlay_diff.h"
#include "fs/tree/prefetcher.h"

namespace imgfs::cli {
namespace {

// containers/storage's archive.Compression values, as its Layer's "compression" field has them.
int StorageCompression(const std::string& format) {
  if (format == "gzip" || format == "estargz") return 2;
  if (format == "zstd:chunked") return 4;
  return 0;  // uncompressed
}

// The TOC digests podman 5.1+ may name an eStargz or zstd:chunked layer by (none for others),
// the one of the layer's own format first: stargz-snapshotter's zstd:chunked converter writes
// the eStargz TOC digest annotation next to the zstd:chunked manifest checksum.
std::vector<std::string> TocDigests(const registry::Descriptor& d) {
  std::vector<std::string_view> keys = {fs::kEstargzTocDigestAnnotation,
                                        fs::kZstdChunkedChecksumAnnotation,
                                        fs::kZstdChunkedLegacyChecksumAnnotation};
  if (d.media_type.find("zstd") != std::string::npos)
    std::rotate(keys.begin(), keys.begin() + 1, keys.end());
  std::vector<std::string> out;
  for (std::string_view key : keys) {
    auto it = d.annotations.find(std::string(key));
    if (it != d.annotations.end()) out.push_back(it->second);
  }
  return out;
}

// The layer's uncompressed tar size when it is known without reading the whole layer: an
// uncompressed layer's blob size, or the annotation eStargz writers may add. Otherwise 0, which
// containers/storage takes as "no size" (podman 4.3 refuses the image when it is -1, the
// "unknown" of later versions).
uint64_t UncompressedSize(const registry::Descriptor& d, const fs::LayerIndex& index) {
  if (index.format == "tar") return d.size;
  auto it = d.annotations.find("io.containers.estargz.uncompressed-size");
  if (it == d.annotations.end()) return 0;
  char* end = nullptr;
  unsigned long long size = std::strtoull(it->second.c_str(), &end, 10);
  return end && *end == '\0' ? size : 0;
}

struct ServedImage {
  registry::ResolvedImage image;
  std::unique_ptr<RegistryBlobSource> source;
};

struct ServedLayer {
  std::string blob;  // the compressed blob digest, what is pinned
  std::shared_ptr<const fs::StoreLayer> layer;
  std::shared_ptr<const fs::ImageLayers> layers;  // the diff's one layer, for the reader
  std::unique_ptr<fs::Prefetcher> prefetcher;
  // Protected by RegistryLayerStore::mu_.
  int uses = 0;
  std::unique_ptr<cache::Pin> pin;
};

class RegistryLayerStore : public fs::LayerProvider {
 public:
  RegistryLayerStore(const StoreOptions& options, fs::Prefetcher::Mode prefetch,
                     std::unique_ptr<cache::Cache> cache)
      : options_(options),
        prefetch_(prefetch),
        cache_(std::move(cache)),
        uses_path_(UsesFilePath(cache_->root(), options.mountpoint)) {
    client_ = std::make_unique<registry::Client>(DefaultClientOptions(options.common));
    // The uses counted before a restart: their layers stay pinned until podman releases them.
    Result<StoredUses> stored = LoadUses(uses_path_);
    if (!stored.ok()) {
      IMGFS_LOG(kWarning, "store: " << stored.status().ToString() << "; starting with no uses");
      return;
    }
    for (auto& [key, use] : *stored) {
      IMGFS_LOG(kInfo, "store: " << key << " was in use (" << use.uses << ") before a restart");
      restored_[key] = {use, Pin(use.blob)};
    }
  }

  Status CheckReference(const std::string& ref) override {
    return ParseTarget(ref, options_.common).status();
  }

  Result<std::shared_ptr<const fs::StoreLayer>> GetLayer(const std::string& ref,
                                                         const std::string& digest) override {
    const std::string key = ref + " " + digest;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = layers_.find(key);
      if (it != layers_.end()) return it->second->layer;
    }
    Result<std::shared_ptr<const fs::StoreLayer>> out = layer_flights_.Do(
        key, [&] { return ServeLayer(ref, digest, key); });
    if (!out.ok()) {
      IMGFS_LOG(kWarning,
                "store: layer " << digest << " of " << ref << ": " << out.status().ToString());
    }
    return out;
  }

  void Use(const std::string& ref, const std::string& digest) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = layers_.find(ref + " " + digest);
    if (it == layers_.end()) return;
    ServedLayer& l = *it->second;
    if (++l.uses == 1 && !l.pin) l.pin = Pin(l.blob);
    IMGFS_LOG(kInfo, "store: layer " << digest << " of " << ref << " used (" << l.uses << ")");
    SaveUsesLocked();
  }

  void Release(const std::string& ref, const std::string& digest) override {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string key = ref + " " + digest;
    int* uses = nullptr;
    if (auto it = layers_.find(key); it != layers_.end()) {
      uses = &it->second->uses;
    } else if (auto r = restored_.find(key); r != restored_.end()) {
      uses = &r->second.use.uses;  // counted before a restart, not looked up since
    } else {
      return;
    }
    if (*uses > 0) --*uses;
    IMGFS_LOG(kInfo, "store: layer " << digest << " of " << ref << " released (" << *uses << ")");
    if (*uses == 0) {
      if (auto it = layers_.find(key); it != layers_.end()) it->second->pin.reset();
      restored_.erase(key);
    }
    SaveUsesLocked();
  }

  // For `imgfs stats` and the tests: every layer served or counted before a restart ("served":
  // false), its uses and whether it is pinned.
  std::string StatsJson() {
    nlohmann::json layers = nlohmann::json::array();
    std::lock_guard<std::mutex> lock(mu_);
    auto add = [&](const std::string& key, int uses, bool pinned, bool served) {
      size_t space = key.find(' ');
      layers.push_back({{"ref", key.substr(0, space)},
                        {"digest", key.substr(space + 1)},
                        {"uses", uses},
                        {"pinned", pinned},
                        {"served", served}});
    };
    for (const auto& [key, l] : layers_) add(key, l->uses, l->pin != nullptr, true);
    for (const auto& [key, r] : restored_) add(key, r.use.uses, r.pin != nullptr, false);
    return nlohmann::json{{"layers", layers}}.dump();
  }

  // Stops the prefetchers before the cache closes.
  ~RegistryLayerStore() override {
    std::lock_guard<std::mutex> lock(mu_);
    layers_.clear();
  }

 private:
  std::unique_ptr<cache::Pin> Pin(const std::string& digest) {
    auto pin = cache_->eviction().PinBlobs({digest});
    if (!pin.ok()) {
      IMGFS_LOG(kWarning, "store: cannot pin " << digest << ": " << pin.status().ToString());
      return nullptr;
    }
    return std::move(*pin);
  }

  Result<std::shared_ptr<ServedImage>> GetImage(const std::string& ref) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = images_.find(ref);
      if (it != images_.end()) return it->second;
    }
    return image_flights_.Do(ref, [&]() -> Result<std::shared_ptr<ServedImage>> {
      IMGFS_ASSIGN_OR_RETURN(Target target, ParseTarget(ref, options_.common));
      auto served = std::make_shared<ServedImage>();
      IMGFS_ASSIGN_OR_RETURN(served->image, ResolveImage(target.ref, target.platform, target.policy,
                                                         client_.get(), cache_.get()));
      IMGFS_RETURN_IF_ERROR(CheckPlatform(served->image, target));
      served->source = std::make_unique<RegistryBlobSource>(client_.get(), target.ref);
      std::lock_guard<std::mutex> lock(mu_);
      images_[ref] = served;
      return served;
    });
  }

  Result<std::shared_ptr<const fs::StoreLayer>> ServeLayer(const std::string& ref,
                                                           const std::string& digest,
                                                           const std::string& key) {
    IMGFS_ASSIGN_OR_RETURN(std::shared_ptr<ServedImage> image, GetImage(ref));
    const registry::ImageManifest& manifest = image->image.parsed;
    size_t i = 0;
    std::vector<std::string> tocs;
    for (; i < manifest.layers.size(); ++i) {
      tocs = TocDigests(manifest.layers[i]);
      if (manifest.layers[i].digest == digest) break;
      if (std::find(tocs.begin(), tocs.end(), digest) != tocs.end()) {
        tocs = {digest};  // the name podman gave is the TOC digest it knows
        break;
      }
    }
    if (i == manifest.layers.size()) {
      return Status::NotFound("no layer " + digest + " in " + ref);
    }
    const registry::Descriptor& desc = manifest.layers[i];
    const std::string& diff_id = image->image.diff_ids[i];
    IMGFS_ASSIGN_OR_RETURN(fs::LayerIndex index,
                           fs::GetOrBuildLayerIndex(ToLayerDescriptor(desc, diff_id), cache_.get(),
                                                    image->source.get()));
    auto diff = std::make_shared<const fs::LayerIndex>(fs::OverlayDiffIndex(index));
    IMGFS_ASSIGN_OR_RETURN(std::unique_ptr<fs::Tree> tree, fs::Tree::Build({diff}));

    auto served = std::make_shared<ServedLayer>();
    served->layers = std::make_shared<const fs::ImageLayers>(
        std::vector<std::shared_ptr<const fs::LayerIndex>>{diff});
    auto layer = std::make_shared<fs::StoreLayer>();
    nlohmann::json info = {{"compressed-diff-digest", desc.digest},
                           {"compressed-size", desc.size},
                           {"diff-digest", diff_id},
                           {"compression", StorageCompression(index.format)}};
    if (uint64_t size = UncompressedSize(desc, index); size > 0) info["diff-size"] = size;
    if (!tocs.empty()) info["toc-digest"] = tocs.front();
    layer->info = info.dump() + "\n";
    layer->blob_size = desc.size;
    layer->diff = std::move(tree);
    layer->reader = std::make_shared<fs::ContentReader>(served->layers, cache_.get(),
                                                        image->source.get());
    auto blob = std::make_shared<VerifiedBlob>(desc.digest, desc.size, index.units, cache_.get(),
                                               image->source.get());
    layer->read_blob = [blob](uint64_t offset, size_t len, char* out) {
      return blob->Read(offset, len, out);
    };
    served->layer = layer;
    served->prefetcher = std::make_unique<fs::Prefetcher>(served->layers, cache_.get(),
                                                          image->source.get(), prefetch_);
    served->prefetcher->Start();
    served->blob = desc.digest;
    served->pin = Pin(desc.digest);
    std::lock_guard<std::mutex> lock(mu_);
    if (auto r = restored_.find(key); r != restored_.end()) {
      served->uses = r->second.use.uses;  // the pin is the served layer's now
      restored_.erase(r);
    }
    layers_[key] = served;
    IMGFS_LOG(kInfo, "store: serving layer " << digest << " of " << ref << " (" << index.format
                                             << ", " << index.entries.size() << " entries)");
    return std::shared_ptr<const fs::StoreLayer>(layer);
  }

  // Writes the counts of every layer in use (cli/store_uses.h). REQUIRES: mu_ held.
  void SaveUsesLocked() {
    StoredUses uses;
    for (const auto& [key, l] : layers_) uses[key] = {l->blob, l->uses};
    for (const auto& [key, r] : restored_) uses[key] = r.use;
    if (Status s = SaveUses(uses_path_, options_.mountpoint, uses); !s.ok()) {
      IMGFS_LOG(kWarning, "store: use counts not kept: " << s.ToString());
    }
  }

  struct RestoredUse {
    StoredUse use;
    std::unique_ptr<cache::Pin> pin;
  };

  const StoreOptions options_;
  const fs::Prefetcher::Mode prefetch_;
  std::unique_ptr<cache::Cache> cache_;
  const std::string uses_path_;
  std::unique_ptr<registry::Client> client_;
  SingleFlight<std::string, std::shared_ptr<ServedImage>> image_flights_;
  SingleFlight<std::string, std::shared_ptr<const fs::StoreLayer>> layer_flights_;

  std::mutex mu_;  // the maps below and every ServedLayer's uses and pin
  std::map<std::string, std::shared_ptr<ServedImage>> images_;
  std::map<std::string, std::shared_ptr<ServedLayer>> layers_;  // "ref digest"
  // Uses counted before a restart, of layers not looked up since ("ref digest").
  std::map<std::string, RestoredUse> restored_;
};

Status ServeStoreAt(const StoreOptions& options, fs::Prefetcher::Mode prefetch,
                    const std::function<void()>& ready) {
  IMGFS_ASSIGN_OR_RETURN(std::unique_ptr<cache::Cache> cache,
                         cache::Cache::Open(CacheRoot(options.common)));
  RegistryLayerStore store(options, prefetch, std::move(cache));
  fs::FuseOptions fuse;
  fuse.mountpoint = options.mountpoint;
  // What a container's root needs: other users (the container's), setuid binaries, devices.
  fuse.fuse_args = {"allow_other", "suid", "dev"};
  fuse.fuse_args.insert(fuse.fuse_args.end(), options.fuse_options.begin(),
                        options.fuse_options.end());
  fuse.debug = options.debug;
  fuse.fsname = "imgfs-store";
  fuse.stats = [&] { return store.StatsJson(); };
  return fs::ServeStore(store, fuse, ready);
}

}  // namespace

int RunStore(const StoreOptions& options) {
  struct stat st;
  if (::stat(options.mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Fail(Status::InvalidArgument("mount point " + options.mountpoint +
                                        " is not a directory: create it first (mkdir -p)"));
  }
  auto prefetch = fs::Prefetcher::ParseMode(options.prefetch);
  if (!prefetch.ok()) return Fail(prefetch.status());
  std::string log_file = options.log_file.empty() ? CacheRoot(options.common) + "/imgfs.log"
                                                  : options.log_file;
  return RunServing(
      options.foreground, "store at " + options.mountpoint, log_file,
      [&](const std::function<void()>& ready) { return ServeStoreAt(options, *prefetch, ready); });
}

}  // namespace imgfs::cli
