// The cache's size, kept: `imgfs cache gc` and `imgfs cache df`, and the limit applied
// automatically by mounts and pulls (docs/cache.md, "Limits and gc"), against the real
// registry through the counting proxy, with real FUSE mounts. Disk usage is measured here
// from the blob files' blocks (st_blocks), not taken from imgfs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "tests/support/blob_proxy.h"
#include "tests/support/files.h"
#include "tests/support/image_builder.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/lazy_images.h"
#include "tests/support/process.h"
#include "tests/support/proxied_image_test.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_blobs.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

// Each test image: one gzip layer of ~1 MiB of random bytes (incompressible) and a text file.
constexpr size_t kImageBytes = 1 << 20;
// cache::AutoGcStep of the limits used below (1/32 of the limit, at least 256 KiB): how far
// above its limit a cache may be once writing stops (docs/cache.md, "Slack").
constexpr uint64_t kStep = 256 << 10;

// Blocks the cache's blob files take, .tmp files included.
uint64_t BlobDiskBytes(const std::string& cache_root) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(cache_root + "/blobs", ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return total;
}

bool BlobStored(const std::string& cache_root, const std::string& digest) {
  std::string hex = digest.substr(7);
  struct stat st;
  return ::stat((cache_root + "/blobs/sha256/" + hex.substr(0, 2) + "/" + hex).c_str(), &st) == 0 &&
         st.st_blocks > 0;
}

struct Image {
  std::string ref;    // through the proxy
  std::string root;   // the reference tree (umoci unpack)
  std::string layer;  // digest of its one layer
};

class CacheGcTest : public ProxiedRegistryTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ProxiedRegistryTest::SetUp());
    auto layout = OciLayout::Init(work_.Sub("layout"));
    ASSERT_TRUE(layout.ok()) << layout.status().ToString();
    layout_ = std::make_unique<OciLayout>(std::move(*layout));
  }

  // Builds and pushes imgfs/gc-<name>:v1.
  Image Build(const std::string& name, uint32_t seed) {
    Image image;
    const std::string bundle = work_.Sub("bundle-" + name);
    EXPECT_TRUE(layout_->NewImage(name).ok());
    EXPECT_TRUE(layout_->Unpack(name, bundle).ok());
    EXPECT_TRUE(MakeDirs(bundle + "/rootfs/data").ok());
    EXPECT_TRUE(
        WriteFile(bundle + "/rootfs/data/" + name + ".bin", RandomBytes(kImageBytes, seed)).ok());
    EXPECT_TRUE(WriteFile(bundle + "/rootfs/data/name", name + "\n").ok());
    Status s = layout_->Repack(name, bundle);
    EXPECT_TRUE(s.ok()) << s.ToString();
    // The reference is umoci's unpack of the image as built (the tar keeps whole seconds).
    s = layout_->Unpack(name, bundle + "-reference");
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_TRUE(PushImage(*layout_, name, registry_->host() + "/imgfs/gc-" + name + ":v1").ok());
    auto manifest = FetchManifest(registry_->host(), "imgfs/gc-" + name, "v1");
    EXPECT_TRUE(manifest.ok() && manifest->layers.size() == 1);
    if (manifest.ok() && !manifest->layers.empty()) image.layer = manifest->layers[0].digest;
    image.ref = proxy_->host() + "/imgfs/gc-" + name + ":v1";
    image.root = bundle + "-reference/rootfs";
    return image;
  }

  RunResult Imgfs(std::vector<std::string> args,
                  const std::vector<std::pair<std::string, std::string>>& env = {}) {
    args.insert(args.begin() + (args[0] == "cache" ? 2 : 1), {"--cache", cache_.path()});
    return RunImgfs(args, "", env);
  }

  nlohmann::json Df() {
    RunResult r = Imgfs({"cache", "df", "--format", "json"});
    EXPECT_TRUE(r.ok()) << r.Describe();
    return nlohmann::json::parse(r.out, nullptr, false);
  }

  // Blob body bytes the proxy passed for `digest` so far.
  uint64_t Fetched(const std::string& digest) {
    auto requests = proxy_->Requests();
    EXPECT_TRUE(requests.ok()) << requests.status().ToString();
    return requests.ok() ? BlobBytes(*requests, digest) : 0;
  }

  // Mounts `image` with `args`, compares every file with the reference, unmounts.
  void MountAndCompare(const Image& image, const std::vector<std::string>& args = {}) {
    ImgfsMount mount(cache_.path());
    RunResult m = mount.Mount(image.ref, args);
    ASSERT_TRUE(m.ok()) << m.Describe() << "\ndaemon log:\n" << mount.LogTail();
    TreeDiff diff = CompareTrees(image.root, mount.path());
    EXPECT_TRUE(diff.empty()) << diff.ToString() << "daemon log:\n" << mount.LogTail();
    EXPECT_GE(diff.entries_compared, 3u);
    after_read_ = BlobDiskBytes(cache_.path());
    RunResult u = mount.Unmount();
    EXPECT_TRUE(u.ok()) << u.Describe();
  }

  TempDir work_{"gc-images"};
  TempDir cache_{"cache"};
  std::unique_ptr<OciLayout> layout_;
  uint64_t after_read_ = 0;  // blob disk bytes measured by the last MountAndCompare
};

// gc --max-size brings the blob files under the size; an evicted image mounts again with
// the registry up: fetched again, every file equal to the reference.
TEST_F(CacheGcTest, GcMaxSizeBringsTheCacheUnderTheLimitAndEvictedImagesMountAgain) {
  std::vector<Image> images = {Build("one", 1), Build("two", 2), Build("three", 3)};
  for (const Image& image : images) {
    RunResult r = Imgfs({"pull", "-q", image.ref});
    ASSERT_TRUE(r.ok()) << r.Describe();
  }
  const uint64_t full = BlobDiskBytes(cache_.path());
  ASSERT_GE(full, 3 * kImageBytes);
  const uint64_t limit = 3 * kImageBytes / 2;  // room for one image, not two

  RunResult gc = Imgfs({"cache", "gc", "--max-size", std::to_string(limit)});
  ASSERT_TRUE(gc.ok()) << gc.Describe();
  EXPECT_THAT(gc.out, HasSubstr("Total reclaimed space: "));
  EXPECT_THAT(gc.out, HasSubstr("least recently used"));
  const uint64_t after = BlobDiskBytes(cache_.path());
  EXPECT_LE(after, limit);
  EXPECT_EQ(Df()["blobs"]["size"].get<uint64_t>(), after);
  std::vector<const Image*> evicted;
  for (const Image& image : images) {
    if (!BlobStored(cache_.path(), image.layer)) evicted.push_back(&image);
  }
  ASSERT_EQ(evicted.size(), 2u) << gc.out;

  for (const Image* image : evicted) {
    const uint64_t before = Fetched(image->layer);
    MountAndCompare(*image);
    EXPECT_GE(Fetched(image->layer) - before, kImageBytes / 2)
        << "the evicted layer must come from the registry again\n"
        << proxy_->Describe();
  }
}

// A configured limit holds while three images, together larger than it, are mounted and
// read one after the other: after each read the blob files take at most the limit plus the
// step (docs/cache.md). The first limit comes from --cache-max-size, then from
// $IMGFS_CACHE_MAX_SIZE, for mounts and for pulls.
TEST_F(CacheGcTest, ConfiguredLimitHoldsWhileImagesAreMountedAndReadOneAfterAnother) {
  std::vector<Image> images = {Build("red", 11), Build("green", 12), Build("blue", 13)};
  const uint64_t limit = 5 * kImageBytes / 2;  // two images fit, three do not
  const std::string size = std::to_string(limit / 1024) + "K";
  MountAndCompare(images[0], {"--cache-max-size", size});
  EXPECT_LE(after_read_, limit + kStep);
  MountAndCompare(images[1], {"--cache-max-size", size});
  EXPECT_LE(after_read_, limit + kStep);
  MountAndCompare(images[2], {"--cache-max-size", size});
  EXPECT_LE(after_read_, limit + kStep);
  EXPECT_TRUE(BlobStored(cache_.path(), images[2].layer));
  // One of the two earlier images went (access times are in seconds: the two may tie, and a
  // tie goes in digest order).
  EXPECT_NE(BlobStored(cache_.path(), images[0].layer), BlobStored(cache_.path(), images[1].layer));

  // Pulls keep it too, with the limit from the environment.
  const std::vector<std::pair<std::string, std::string>> env = {{"IMGFS_CACHE_MAX_SIZE", size}};
  for (const Image& image : images) {
    RunResult r = Imgfs({"pull", "-q", image.ref}, env);
    ASSERT_TRUE(r.ok()) << r.Describe();
    EXPECT_LE(BlobDiskBytes(cache_.path()), limit + kStep) << "after pulling " << image.ref;
  }
  RunResult bad = Imgfs({"pull", "-q", images[0].ref}, {{"IMGFS_CACHE_MAX_SIZE", "lots"}});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("IMGFS_CACHE_MAX_SIZE"));
  EXPECT_THAT(bad.err, HasSubstr("'lots'"));
}

// gc never evicts the blobs of an image mounted now: with a limit of 0 only they stay, and
// the mount reads every file from them with the registry stopped.
TEST_F(CacheGcTest, GcSparesTheBlobsOfAMountedImage) {
  Image mounted = Build("mounted", 21), other = Build("other", 22);
  for (const Image* image : {&mounted, &other}) {
    RunResult r = Imgfs({"pull", "-q", image->ref});
    ASSERT_TRUE(r.ok()) << r.Describe();
  }
  ImgfsMount mount(cache_.path());
  RunResult m = mount.Mount(mounted.ref);
  ASSERT_TRUE(m.ok()) << m.Describe() << "\ndaemon log:\n" << mount.LogTail();
  nlohmann::json df = Df();
  EXPECT_EQ(df["images"]["total"], 2);
  EXPECT_EQ(df["images"]["active"], 1);

  RunResult gc = Imgfs({"cache", "gc", "--max-size", "0"});
  ASSERT_TRUE(gc.ok()) << gc.Describe();
  EXPECT_THAT(gc.err, HasSubstr("live mounts pin"));
  EXPECT_TRUE(BlobStored(cache_.path(), mounted.layer)) << gc.out;
  EXPECT_FALSE(BlobStored(cache_.path(), other.layer)) << gc.out;

  registry_->Stop();
  const uint64_t fetched = Fetched(mounted.layer);
  TreeDiff diff = CompareTrees(mounted.root, mount.path());
  EXPECT_TRUE(diff.empty()) << diff.ToString() << "daemon log:\n" << mount.LogTail();
  EXPECT_EQ(Fetched(mounted.layer), fetched);
  ASSERT_TRUE(mount.Unmount().ok());

  gc = Imgfs({"cache", "gc", "--max-size", "0"});
  ASSERT_TRUE(gc.ok()) << gc.Describe();
  EXPECT_EQ(BlobDiskBytes(cache_.path()), 0u) << gc.out;
}

// imgfs rmi makes an image's blobs reclaimable (df says how much) and imgfs cache gc, with
// no size, frees exactly them.
TEST_F(CacheGcTest, RmiThenGcFreesTheImagesBytes) {
  Image kept = Build("kept", 31), removed = Build("removed", 32);
  for (const Image* image : {&kept, &removed}) {
    RunResult r = Imgfs({"pull", "-q", image->ref});
    ASSERT_TRUE(r.ok()) << r.Describe();
  }
  nlohmann::json df = Df();
  ASSERT_TRUE(df.is_object()) << df;
  EXPECT_EQ(df["images"]["total"], 2);
  EXPECT_EQ(df["blobs"]["total"], 2);
  EXPECT_EQ(df["blobs"]["reclaimable"], 0);
  const uint64_t size = df["blobs"]["size"].get<uint64_t>();
  EXPECT_EQ(size, BlobDiskBytes(cache_.path()));
  RunResult text = Imgfs({"cache", "df"});
  ASSERT_TRUE(text.ok()) << text.Describe();
  EXPECT_THAT(text.out, HasSubstr("TYPE      TOTAL     ACTIVE    SIZE        RECLAIMABLE\n"
                                  "Images    2         0"));

  RunResult gc = Imgfs({"cache", "gc"});
  ASSERT_TRUE(gc.ok()) << gc.Describe();
  EXPECT_EQ(gc.out.rfind("Total reclaimed space: 0B\n", 0), 0u) << gc.out;
  EXPECT_EQ(BlobDiskBytes(cache_.path()), size);

  RunResult rmi = Imgfs({"rmi", removed.ref});
  ASSERT_TRUE(rmi.ok()) << rmi.Describe();
  df = Df();
  EXPECT_EQ(df["images"]["total"], 1);
  const uint64_t reclaimable = df["blobs"]["reclaimable"].get<uint64_t>();
  EXPECT_GE(reclaimable, kImageBytes);
  EXPECT_LT(reclaimable, size);

  gc = Imgfs({"cache", "gc"});
  ASSERT_TRUE(gc.ok()) << gc.Describe();
  EXPECT_THAT(gc.out, HasSubstr("Deleted: " + removed.layer + " ("));
  EXPECT_THAT(gc.out, HasSubstr("used by no image"));
  EXPECT_THAT(gc.out, ::testing::Not(HasSubstr(kept.layer)));
  EXPECT_FALSE(BlobStored(cache_.path(), removed.layer));
  EXPECT_TRUE(BlobStored(cache_.path(), kept.layer));
  EXPECT_EQ(BlobDiskBytes(cache_.path()), size - reclaimable);
  df = Df();
  EXPECT_EQ(df["blobs"]["size"].get<uint64_t>(), size - reclaimable);
  EXPECT_EQ(df["blobs"]["reclaimable"], 0);
}

}  // namespace
}  // namespace imgfs::test
