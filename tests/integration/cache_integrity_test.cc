// The cache's integrity, end to end with the real binary and registry: `imgfs cache verify` on
// a pulled image (clean: exit 0), a stored blob corrupted on disk (one byte flipped in its
// file) found by a mount, by `imgfs cat` and by `imgfs cache verify`, dropped and fetched
// again, and never served: every byte any reader gets equals umoci's unpack of the image.
#include <dirent.h>
#include <signal.h>
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
#include "tests/support/proxied_image_test.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

// The most bytes any temporary file of the blob stored at `blob_path` holds (a transfer in
// progress writes one next to the blob file).
uint64_t TempFileBytes(const std::string& blob_path) {
  const std::string dir = blob_path.substr(0, blob_path.rfind('/'));
  const std::string prefix = blob_path.substr(dir.size() + 1) + ".tmp.";
  uint64_t most = 0;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      struct stat st;
      if (std::string(e->d_name).rfind(prefix, 0) == 0 &&
          ::stat((dir + "/" + e->d_name).c_str(), &st) == 0) {
        most = std::max(most, static_cast<uint64_t>(st.st_size));
      }
    }
    ::closedir(d);
  }
  return most;
}

class CacheIntegrityTest : public ProxiedImageTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ProxiedImageTest::SetUp());
    ASSERT_EQ(manifest_.layers.size(), 1u);
    ASSERT_GT(layer_.size, 64u << 10) << "the busybox layer is big enough to hold a flip";
    reference_ = TestWorld::Get().ReferenceRoot("busybox");
  }

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
    EXPECT_THAT(clean.out, HasSubstr("Verified 1 complete blobs,"));
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

  // `imgfs cache verify` is clean, and a mount reads the image right without fetching.
  void ExpectCleanAndComplete() {
    RunResult verify = Imgfs({"cache", "verify"});
    EXPECT_TRUE(verify.ok()) << verify.Describe();
    EXPECT_THAT(verify.out, HasSubstr(": all good\n"));
    ImgfsMount mount(cache_.path());
    RunResult m = mount.Mount(Proxied());
    ASSERT_TRUE(m.ok()) << m.Describe();
    TreeDiff diff = CompareTrees(reference_, mount.path());
    EXPECT_TRUE(diff.empty()) << diff.ToString();
    EXPECT_EQ(LayerBytesSinceLastCall(), 0u) << proxy_->Describe();
  }

  std::string reference_;
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
  EXPECT_THAT(again.out, HasSubstr("Verified 0 complete blobs,"));

  // The layer index stayed (it is verified metadata): the pull fetches the layer's units,
  // which cover all of it but the gzip trailer.
  RunResult pull = Imgfs({"pull", Proxied()});
  ASSERT_TRUE(pull.ok()) << pull.Describe();
  EXPECT_THAT(pull.out, HasSubstr(": Pull complete"));
  uint64_t fetched = LayerBytesSinceLastCall();
  EXPECT_LE(fetched, layer_.size) << proxy_->Describe();
  EXPECT_GE(fetched, layer_.size - 64) << proxy_->Describe();
  ExpectCleanAndComplete();
}

// A pull killed (SIGKILL) half-way through its layer, then run again: the second run fetches
// only what the first did not receive (counted at the proxy), and the image verifies clean
// and reads right.
TEST_F(CacheIntegrityTest, PullKilledHalfWayResumesWhereItStopped) {
  const uint64_t stall_at = layer_.size / 2;
  ASSERT_TRUE(proxy_->SetFault(layer_.digest, BlobProxy::Fault::kStall, stall_at).ok());
  TempDir logs("logs");
  BackgroundProcess pull;
  // The pull's stall timeout (30 s) is far beyond the wait below.
  ASSERT_TRUE(pull.Start({ImgfsBinary(), "pull", "--cache", cache_.path(), Proxied()},
                         logs.Sub("out"), logs.Sub("err"))
                  .ok());
  // Half-way: the layer's temporary file holds everything the proxy sent before it stalled.
  const std::string blob = StoredBlobPath(cache_.path(), layer_.digest);
  ASSERT_TRUE(WaitUntil([&] { return TempFileBytes(blob) >= stall_at; }, 20))
      << "the pull never got half-way through the layer\n"
      << proxy_->Describe() << "pull's stderr: " << ReadFile(logs.Sub("err")).value();
  ASSERT_EQ(::kill(pull.pid(), SIGKILL), 0);
  ASSERT_TRUE(WaitUntil([&] { return !pull.running(); }, 10));
  ASSERT_TRUE(proxy_->ClearFaults().ok());
  seen_ = Requests().size();

  RunResult again = Imgfs({"pull", Proxied()});
  ASSERT_TRUE(again.ok()) << again.Describe();
  EXPECT_THAT(again.out, HasSubstr(": Pull complete"));
  EXPECT_EQ(LayerBytesSinceLastCall(), layer_.size - stall_at)
      << "only what the killed pull did not receive is fetched\n"
      << proxy_->Describe();
  EXPECT_EQ(TempFileBytes(blob), 0u) << "no temporary file is left";
  ExpectCleanAndComplete();
}

TEST_F(CacheIntegrityTest, VerifyOfAnEmptyCacheIsCleanAndTheGroupNeedsACommand) {
  RunResult verify = Imgfs({"cache", "verify"});
  EXPECT_TRUE(verify.ok()) << verify.Describe();
  EXPECT_EQ(verify.out,
            "Verified 0 complete blobs, 0 units and 0 decoded files (0B), 0 layer indexes, "
            "0 documents, 0 references: all good\n");
  RunResult bare = RunImgfs({"cache"});
  EXPECT_NE(bare.exit_code, 0) << bare.Describe();
}

}  // namespace
}  // namespace imgfs::test
