// The cache's integrity, end to end with the real binary and registry: `imgfs cache verify` on
// a pulled image (clean: exit 0), a stored blob corrupted on disk (one byte flipped in its
// file) found by a mount, by `imgfs cat` and by `imgfs cache verify`, dropped and fetched
// again, and never served: every byte any reader gets equals umoci's unpack of the image.
#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "tests/support/blob_proxy.h"
#include "tests/support/cache_store.h"
#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/lazy_images.h"
#include "tests/support/process.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

class CacheIntegrityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = CheckImgfsBinary();
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto pushed = TestWorld::Get().Pushed("busybox", ManifestFormat::kOci);
    ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
    image_ = *pushed;
    auto registry = TestWorld::Get().Registry();
    ASSERT_TRUE(registry.ok()) << registry.status().ToString();
    auto proxy = BlobProxy::Start((*registry)->port());
    ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
    proxy_ = std::move(*proxy);
    auto manifest = FetchManifest(image_.host, image_.repo, image_.tag);
    ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
    ASSERT_EQ(manifest->layers.size(), 1u);
    layer_ = manifest->layers.front();
    ASSERT_GT(layer_.size, 64u << 10) << "the busybox layer is big enough to hold a flip";
    reference_ = TestWorld::Get().ReferenceRoot("busybox");
  }

  std::string Proxied() const { return proxy_->host() + "/" + image_.repo + ":" + image_.tag; }

  RunResult Imgfs(std::vector<std::string> args) {
    args.insert(args.end(), {"--cache", cache_.path()});
    return RunImgfs(args);
  }

  // Pulls the image and flips one byte in the middle of its stored layer blob.
  void PullAndCorrupt() {
    RunResult pull = Imgfs({"pull", "-q", Proxied()});
    ASSERT_TRUE(pull.ok()) << pull.Describe();
    RunResult clean = Imgfs({"cache", "verify"});
    ASSERT_TRUE(clean.ok()) << clean.Describe();
    EXPECT_THAT(clean.out, HasSubstr("Verified 1 complete blobs"));
    EXPECT_THAT(clean.out, HasSubstr(": all good\n"));
    struct stat st;
    const std::string blob = StoredBlobPath(cache_.path(), layer_.digest);
    ASSERT_EQ(::stat(blob.c_str(), &st), 0) << blob;
    ASSERT_EQ(static_cast<uint64_t>(st.st_size), layer_.size);
    FlipByteInFile(blob, layer_.size / 2);
    seen_ = Requests().size();
  }

  std::vector<ProxiedRequest> Requests() {
    auto requests = proxy_->Requests();
    EXPECT_TRUE(requests.ok()) << requests.status().ToString();
    return requests.ok() ? *requests : std::vector<ProxiedRequest>();
  }

  // Bytes of the layer the proxy passed since PullAndCorrupt (or the last call).
  uint64_t LayerBytesSinceLastCall() {
    std::vector<ProxiedRequest> requests = Requests();
    std::vector<ProxiedRequest> fresh(requests.begin() + std::min(seen_, requests.size()),
                                      requests.end());
    seen_ = requests.size();
    return BlobBytes(fresh, layer_.digest);
  }

  PushedImage image_;
  std::unique_ptr<BlobProxy> proxy_;
  ManifestLayer layer_;
  std::string reference_;
  TempDir cache_{"cache"};
  size_t seen_ = 0;
};

TEST_F(CacheIntegrityTest, MountFindsTheCorruptBlobAndServesOnlyVerifiedBytes) {
  PullAndCorrupt();
  ImgfsMount mount(cache_.path());
  RunResult m = mount.Mount(Proxied());
  ASSERT_TRUE(m.ok()) << m.Describe();
  TreeDiff diff = CompareTrees(reference_, mount.path());
  EXPECT_TRUE(diff.empty()) << diff.ToString() << "daemon log:\n" << mount.LogTail();
  EXPECT_GE(diff.entries_compared, 4u);
  EXPECT_GT(LayerBytesSinceLastCall(), 0u) << "the damaged bytes must be fetched again\n"
                                           << proxy_->Describe();
  EXPECT_THAT(mount.LogTail(), HasSubstr("is corrupt"));
  mount.Unmount();
  RunResult verify = Imgfs({"cache", "verify"});
  EXPECT_TRUE(verify.ok()) << verify.Describe();
}

TEST_F(CacheIntegrityTest, CatFindsTheCorruptBlobAndServesOnlyVerifiedBytes) {
  PullAndCorrupt();
  RunResult cat = Imgfs({"cat", Proxied(), "/bin/busybox"});
  ASSERT_TRUE(cat.ok()) << cat.Describe();
  auto want = ReadFile(reference_ + "/bin/busybox");
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  EXPECT_TRUE(cat.out == *want) << "imgfs cat served other bytes than the image's ("
                                << cat.out.size() << " vs " << want->size() << ")";
  EXPECT_GT(LayerBytesSinceLastCall(), 0u) << proxy_->Describe();
  EXPECT_THAT(cat.err, HasSubstr("is corrupt"));
}

// With the registry out of reach (the proxy the image was pulled through is gone), the
// damaged part cannot be fetched again: the read fails, and what it wrote before failing is
// the image's bytes.
TEST_F(CacheIntegrityTest, OfflineReadsOfTheCorruptPartFailRatherThanServeIt) {
  PullAndCorrupt();
  const std::string image = Proxied();
  proxy_.reset();
  RunResult cat = Imgfs({"cat", image, "/bin/busybox"});
  EXPECT_EQ(cat.exit_code, 1) << cat.Describe();
  EXPECT_THAT(cat.err, HasSubstr("is corrupt"));
  auto want = ReadFile(reference_ + "/bin/busybox");
  ASSERT_TRUE(want.ok());
  EXPECT_LT(cat.out.size(), want->size());
  EXPECT_TRUE(want->compare(0, cat.out.size(), cat.out) == 0)
      << "what was written before the failure must be the image's bytes";
}

TEST_F(CacheIntegrityTest, VerifyReportsAndDropsTheCorruptBlobAndPullFetchesItAgain) {
  PullAndCorrupt();
  RunResult verify = Imgfs({"cache", "verify"});
  EXPECT_EQ(verify.exit_code, 1) << verify.Describe();
  EXPECT_THAT(verify.out, HasSubstr("blob " + layer_.digest + " bytes [0, " +
                                    std::to_string(layer_.size) + "): hash to sha256:"));
  EXPECT_THAT(verify.out, HasSubstr(", expected " + layer_.digest + "; dropped\n"));
  EXPECT_THAT(verify.out, HasSubstr(": 1 failed, 1 dropped\n"));
  struct stat st;
  EXPECT_NE(::stat(StoredBlobPath(cache_.path(), layer_.digest).c_str(), &st), 0)
      << "the blob file is gone";

  RunResult again = Imgfs({"cache", "verify"});
  EXPECT_TRUE(again.ok()) << again.Describe();
  EXPECT_THAT(again.out, HasSubstr("Verified 0 complete blobs"));

  // The layer index stayed (it is verified metadata): the pull fetches the layer's units,
  // which cover all of it but the gzip trailer.
  RunResult pull = Imgfs({"pull", Proxied()});
  ASSERT_TRUE(pull.ok()) << pull.Describe();
  EXPECT_THAT(pull.out, HasSubstr(": Pull complete"));
  uint64_t fetched = LayerBytesSinceLastCall();
  EXPECT_LE(fetched, layer_.size) << proxy_->Describe();
  EXPECT_GE(fetched, layer_.size - 64) << proxy_->Describe();
  RunResult after = Imgfs({"cache", "verify"});
  EXPECT_TRUE(after.ok()) << after.Describe();
  EXPECT_THAT(after.out, HasSubstr(": all good"));

  ImgfsMount mount(cache_.path());
  RunResult m = mount.Mount(Proxied());
  ASSERT_TRUE(m.ok()) << m.Describe();
  TreeDiff diff = CompareTrees(reference_, mount.path());
  EXPECT_TRUE(diff.empty()) << diff.ToString();
  EXPECT_EQ(LayerBytesSinceLastCall(), 0u) << proxy_->Describe();
}

TEST_F(CacheIntegrityTest, VerifyOfAnEmptyCacheIsCleanAndTheGroupNeedsACommand) {
  RunResult verify = Imgfs({"cache", "verify"});
  EXPECT_TRUE(verify.ok()) << verify.Describe();
  EXPECT_EQ(verify.out,
            "Verified 0 complete blobs and 0 units (0B), 0 layer indexes, 0 documents, "
            "0 references: all good\n");
  RunResult bare = RunImgfs({"cache"});
  EXPECT_NE(bare.exit_code, 0) << bare.Describe();
}

}  // namespace
}  // namespace imgfs::test
