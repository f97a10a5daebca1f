// OpenedImage: an image resolved, its layers indexed and merged into a tree, with a reader of
// its files: what a mount serves, and what `imgfs ls`, `cat` and `cp` read without FUSE.
// Everything goes through the same lazy, verified, cached path: a file's bytes are fetched
// (and verified) only when read, and what the cache holds needs no registry.
//
// Ownership: an OpenedImage owns its cache, client, sources, tree and reader; members are
// destroyed in reverse order, so the reader stops before the cache closes. It pins its
// layers' blobs (cli/cache_usage.h) for its whole life, so no gc evicts them meanwhile.
// Thread-safety: as its parts (tree and reader are safe from many threads).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cache/cache.h"
#include "cache/eviction.h"
#include "cli/common.h"
#include "cli/registry_blob_source.h"
#include "fs/tree/content_reader.h"
#include "fs/tree/image_layers.h"
#include "fs/tree/tree.h"
#include "registry/client.h"
#include "registry/resolve.h"

namespace imgfs::cli {

struct OpenedImage {
  // Set when a layer fails to index: the client's other transfers stop (ClientOptions::cancel).
  std::atomic<bool> cancel{false};
  std::unique_ptr<cache::Cache> cache;
  std::unique_ptr<cache::Pin> pin;  // the layers' blobs, held until the reader has stopped
  std::unique_ptr<registry::Client> client;
  registry::ResolvedImage image;
  std::unique_ptr<RegistryBlobSource> registry_source;
  std::unique_ptr<MeteredBlobSource> source;  // what was fetched, per blob (imgfs stats)
  std::vector<std::shared_ptr<const fs::LayerIndex>> layers;
  std::string shared_index;  // the shared index artifact some layers use; "" when none
  std::shared_ptr<const fs::ImageLayers> image_layers;  // the layers as the reader sees them
  std::unique_ptr<fs::Tree> tree;
  std::unique_ptr<fs::ContentReader> reader;
};

// Resolves `target` (under its pull policy), checks the platform, indexes the layers (with
// shared indexes where the cache has none, cli/shared_index.h) and builds the tree. Errors as
// ResolveImage, CheckPlatform, IndexLayers and Tree::Build.
Result<std::unique_ptr<OpenedImage>> OpenImage(const Target& target, const CommonOptions& common);

// The inode of `path` in the image ("/etc/passwd", "etc/passwd", "/" or ""), following
// symlinks inside the image (absolute targets start at the image's root; ".." stops at the
// root) in every component but the last, and in the last too when `follow_last`. kNotFound
// naming the path; kInvalidArgument for a non-directory in the middle or more than 40 links.
Result<uint64_t> ResolvePath(const fs::Tree& tree, std::string_view path, bool follow_last);

// Streams the bytes of regular file `ino` through `sink`, in order.
Status ReadWholeFile(OpenedImage& image, uint64_t ino,
                     const std::function<Status(std::string_view)>& sink);

}  // namespace imgfs::cli
