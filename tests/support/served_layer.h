// One layer blob indexed, merged and mounted in-process, the registry left out: the streamed
// index pass (fs/layer/stream_index.h) over the blob, the Tree, a ContentReader over a
// throw-away cache whose source is the blob in memory, and ServeFuse on a real kernel mount.
// For the tests that hold imgfs's reading of a layer against other tar readers'.
//
// Header-only because it needs the fuse library, which only the fuse_* unit tests link.
// Not thread-safe; Mount at most once. The destructor detaches the mount and waits for the
// serving thread.
#pragma once

#include <sys/mount.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "cache/cache.h"
#include "fs/fuse/fuse_fs.h"
#include "fs/layer/stream_index.h"
#include "fs/tree/content_reader.h"
#include "fs/tree/image_layers.h"
#include "fs/tree/tree.h"
#include "tests/support/fake_blob_source.h"

namespace imgfs::test {

// The index the streamed pass builds for `blob`, fed in 64 KiB pieces.
inline Result<fs::LayerIndex> IndexBlob(std::string_view blob) {
  fs::StreamIndexer indexer;
  for (size_t at = 0; at < blob.size(); at += 65536) {
    IMGFS_RETURN_IF_ERROR(indexer.Feed(blob.substr(at, 65536)));
  }
  return indexer.Finish();
}

class ServedLayer {
 public:
  ServedLayer() = default;
  ~ServedLayer() {
    if (mounted_) umount2(mountpoint_.c_str(), MNT_DETACH);
    if (serving_.joinable()) serving_.join();
  }
  ServedLayer(const ServedLayer&) = delete;
  ServedLayer& operator=(const ServedLayer&) = delete;

  // Indexes `blob` and mounts it at `mountpoint`, with its cache in `cache_dir`.
  Status Mount(std::string blob, const std::string& cache_dir, const std::string& mountpoint) {
    IMGFS_ASSIGN_OR_RETURN(fs::LayerIndex index, IndexBlob(blob));
    auto layer = std::make_shared<const fs::LayerIndex>(std::move(index));
    IMGFS_ASSIGN_OR_RETURN(cache_, cache::Cache::Open(cache_dir));
    IMGFS_ASSIGN_OR_RETURN(tree_, fs::Tree::Build({layer}));
    source_ = std::make_unique<FakeBlobSource>(std::move(blob), FakeBlobSource::Serve::kAnyDigest);
    reader_ = std::make_unique<fs::ContentReader>(
        std::make_shared<const fs::ImageLayers>(tree_->layers()), cache_.get(), source_.get());
    mountpoint_ = mountpoint;
    std::future<Status> ready = ready_.get_future();
    serving_ = std::thread([this] {
      fs::FuseOptions options;
      options.mountpoint = mountpoint_;
      Status s = fs::ServeFuse(*tree_, *reader_, options, [this] {
        if (!announced_.exchange(true)) ready_.set_value(Status::Ok());
      });
      if (!announced_.exchange(true)) {
        ready_.set_value(s.ok() ? Status::Internal("ServeFuse returned before the mount") : s);
      }
    });
    if (ready.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      return Status::Internal("the FUSE mount did not come up in 20 s");
    }
    IMGFS_RETURN_IF_ERROR(ready.get());
    mounted_ = true;
    return Status::Ok();
  }

  const fs::Tree& tree() const { return *tree_; }

 private:
  std::unique_ptr<cache::Cache> cache_;
  std::unique_ptr<fs::Tree> tree_;
  std::unique_ptr<FakeBlobSource> source_;
  std::unique_ptr<fs::ContentReader> reader_;
  std::string mountpoint_;
  std::promise<Status> ready_;
  std::atomic<bool> announced_{false};
  std::thread serving_;
  bool mounted_ = false;
};

}  // namespace imgfs::test
