// Lazy pulling of eStargz and zstd:chunked images made by the real converter: containerd with a
// private root and socket, `ctr-remote image convert --estargz` / `--zstdchunked` of the
// standard "layered" image, pushed to the test registry. A mount must equal `umoci unpack` of
// the original image, reading one small file must not fetch the layers' contents, and a TOC
// that does not match the digest its manifest annotation promises must fail the mount.
#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <thread>

#include "base/digest.h"
#include "tests/support/blob_proxy.h"
#include "tests/support/containerd.h"
#include "tests/support/files.h"
#include "tests/support/hostile_images.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/lazy_images.h"
#include "tests/support/process.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

// Bytes the cache holds on disk (allocated blocks of its sparse blob files).
uint64_t CachedBlobBytes(const std::string& cache_dir) {
  uint64_t total = 0;
  std::error_code ec;
  std::filesystem::path blobs = std::filesystem::path(cache_dir) / "blobs";
  if (!std::filesystem::exists(blobs, ec)) return 0;
  for (auto it = std::filesystem::recursive_directory_iterator(blobs, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return total;
}

struct Converted {
  std::string host;   // the test registry
  std::string repo;   // imgfs/layered-<kind>, tag latest
  std::string image;  // host/repo:tag
  Status status;      // why it is missing
};

class LazyPullTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    containerd_ = new PrivateContainerd;
    setup_ = containerd_->Start();
    if (!setup_.ok()) return;
    auto pushed = TestWorld::Get().Pushed("layered", ManifestFormat::kOci);
    if (!pushed.ok()) {
      setup_ = pushed.status().WithContext("pushing the layered test image");
      return;
    }
    const std::string source = pushed->ByTag();
    // Fetch without unpacking: conversion needs only the content, and containerd's unpack
    // cannot apply the image's hard link into a lower layer.
    setup_ = containerd_->Ctr({"content", "fetch", "--plain-http", source});
    if (!setup_.ok()) return;
    for (const std::string& kind : {std::string("estargz"), std::string("zstdchunked")}) {
      Converted& c = (*converted_)[kind];
      c.host = pushed->host;
      c.repo = "imgfs/layered-" + kind;
      c.image = c.host + "/" + c.repo + ":latest";
      c.status = containerd_->Ctr({"image", "convert", "--" + kind, "--oci", source, c.image});
      if (c.status.ok()) {
        c.status = containerd_->Ctr({"image", "push", "--plain-http", c.image});
      }
    }
  }
  static void TearDownTestSuite() {
    delete containerd_;
    containerd_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(CheckImgfsBinary().ok()) << CheckImgfsBinary().ToString();
    ASSERT_TRUE(setup_.ok()) << setup_.ToString();
    const Converted& c = (*converted_)[GetParam()];
    ASSERT_TRUE(c.status.ok()) << "converting to " << GetParam() << ": " << c.status.ToString();
    image_ = c.image;
    converted_image_ = &c;
  }

  static PrivateContainerd* containerd_;
  static Status setup_;
  static std::map<std::string, Converted>* converted_;
  std::string image_;
  const Converted* converted_image_ = nullptr;
  TempDir cache_{"cache"};
};

PrivateContainerd* LazyPullTest::containerd_ = nullptr;
Status LazyPullTest::setup_;
std::map<std::string, Converted>* LazyPullTest::converted_ = new std::map<std::string, Converted>;

TEST_P(LazyPullTest, MountEqualsUnpackOfTheOriginal) {
  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount(image_);
  ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
  ASSERT_TRUE(mount.mounted());
  TreeDiff diff = CompareTrees(TestWorld::Get().ReferenceRoot("layered"), mount.path());
  EXPECT_TRUE(diff.empty()) << diff.total << " differences between umoci unpack of layered and "
                            << "the imgfs mount of its " << GetParam() << " conversion:\n"
                            << diff.ToString() << "daemon log:\n"
                            << mount.LogTail();
  EXPECT_GE(diff.entries_compared, 10u);
}

TEST_P(LazyPullTest, ReadingOneSmallFileFetchesLittle) {
  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount(image_);
  ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
  auto small = ReadFile(mount.Path("etc/xattr-file"));
  ASSERT_TRUE(small.ok()) << small.status().ToString() << "\ndaemon log:\n" << mount.LogTail();
  EXPECT_EQ(*small, "has xattrs\n");
  const uint64_t after_one_file = CachedBlobBytes(cache_.path());

  TreeDiff diff = CompareTrees(TestWorld::Get().ReferenceRoot("layered"), mount.path());
  EXPECT_TRUE(diff.empty()) << diff.ToString() << "daemon log:\n" << mount.LogTail();
  const uint64_t after_everything = CachedBlobBytes(cache_.path());
  // The image holds a 17 MiB file: reading everything stores far more than one small file.
  EXPECT_GT(after_everything, 4u << 20) << "the cache does not keep fetched content";
  EXPECT_LT(after_one_file, after_everything / 4)
      << "reading one small file stored " << after_one_file << " bytes of " << after_everything
      << ": the layer was not pulled lazily";
}

// The TOC is trusted only because a verified manifest names its digest: a manifest whose
// annotation names another digest must not mount, and the error must say why.
TEST_P(LazyPullTest, TocNotMatchingItsAnnotationFailsTheMount) {
  auto manifest = FetchManifest(converted_image_->host, converted_image_->repo, "latest");
  ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
  // zstd:chunked layers are verified against their manifest checksum; stargz-snapshotter
  // also gives them a toc.digest. Every TOC digest of every layer is made wrong.
  const std::string wrong = Sha256Digest("not the table of contents of any layer");
  int changed = 0;
  std::string first_layer;
  for (auto& layer : manifest->json["layers"]) {
    if (!layer.contains("annotations")) continue;
    for (const char* key : {kEstargzTocDigestAnnotation, kZstdChunkedChecksumAnnotation,
                            kZstdChunkedLegacyChecksumAnnotation}) {
      if (layer["annotations"].contains(key)) {
        layer["annotations"][key] = wrong;
        ++changed;
        if (first_layer.empty()) first_layer = layer.value("digest", "");
      }
    }
  }
  ASSERT_GT(changed, 0) << "the " << GetParam()
                        << " conversion has no TOC digest annotation: " << manifest->body;
  const std::string media_type = manifest->media_type.empty()
                                     ? "application/vnd.oci.image.manifest.v1+json"
                                     : manifest->media_type;
  auto put = PutManifest(converted_image_->host, converted_image_->repo, "wrong-toc",
                         manifest->json.dump(), media_type);
  ASSERT_TRUE(put.ok()) << put.status().ToString();

  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount(converted_image_->host + "/" + converted_image_->repo + ":wrong-toc",
                            {"--prefetch", "none"});
  EXPECT_FALSE(r.ok()) << "a " << GetParam() << " image whose TOC does not match its "
                       << "annotation was mounted:\n"
                       << r.Describe() << "\nmanifest: " << manifest->json.dump()
                       << "\ndaemon log:\n"
                       << mount.LogTail();
  EXPECT_FALSE(mount.mounted());
  std::string message = r.err + r.out;
  std::string lower = message;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  EXPECT_TRUE(lower.find("toc") != std::string::npos ||
              lower.find("table of contents") != std::string::npos ||
              lower.find("manifest checksum") != std::string::npos)
      << "the error does not say that the TOC is wrong: " << r.Describe();
  EXPECT_TRUE(message.find(DigestHex(first_layer).substr(0, 12)) != std::string::npos ||
              message.find(DigestHex(wrong).substr(0, 12)) != std::string::npos)
      << "the error names neither the layer " << first_layer << " nor the digest " << wrong << ": "
      << r.Describe();
}

// imgfs pull fetches a converted image's TOCs and every chunk, verified: afterwards, with
// nothing listening where the image came from, a mount reads every file equal to the original.
TEST_P(LazyPullTest, PullFetchesEveryChunkForAnOfflineMount) {
  auto registry = TestWorld::Get().Registry();
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  auto proxy = BlobProxy::Start((*registry)->port());
  ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
  const std::string image = (*proxy)->host() + "/" + converted_image_->repo + ":latest";
  RunResult pull = RunImgfs({"pull", "--cache", cache_.path(), image});
  ASSERT_TRUE(pull.ok()) << pull.Describe();
  EXPECT_NE(pull.out.find(": Pull complete\n"), std::string::npos) << pull.out;
  EXPECT_NE(pull.out.find("Status: Downloaded newer image for " + image), std::string::npos)
      << pull.out;
  proxy->reset();  // the image's registry is gone

  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount(image);
  ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
  TreeDiff diff = CompareTrees(TestWorld::Get().ReferenceRoot("layered"), mount.path());
  EXPECT_TRUE(diff.empty()) << diff.ToString() << "daemon log:\n" << mount.LogTail();
  EXPECT_GE(diff.entries_compared, 10u);
}

// The image config's diff_id of a TOC layer is checked once the layer is whole: a config that
// names the wrong one for the layer holding big/blob.bin (layer 2 of "layered").
// `mount --prefetch all` mounts (the layer is read lazily), then, once every chunk is in, logs
// the mismatch naming the layer and answers EIO for that layer's files while the other layers
// read on; the verdict is recorded, so a later mount of the image fails at once naming the
// layer. `imgfs pull` fetches every chunk and fails naming the layer.
TEST_P(LazyPullTest, WrongDiffIdIsFoundWhenTheLayerIsWhole) {
  auto manifest = FetchManifest(converted_image_->host, converted_image_->repo, "latest");
  ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
  ASSERT_EQ(manifest->layers.size(), 3u);
  const std::string layer = manifest->layers[1].digest;
  const std::string wrong = Sha256Digest("not the uncompressed layer");
  PushedImage base{converted_image_->host, converted_image_->repo, "latest", ""};
  auto pushed = PushEditedImage(base, "wrong-diff-id", [&](nlohmann::json*, std::string* config) {
    nlohmann::json c = nlohmann::json::parse(*config);
    c["rootfs"]["diff_ids"][1] = wrong;
    *config = c.dump();
  });
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  const std::string reason = "diff_id for it is " + wrong;

  {
    ImgfsMount mount(cache_.path());
    RunResult r = mount.Mount(pushed->ByTag(), {"--prefetch", "all"});
    ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (mount.LogTail().find(reason) == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const std::string log = mount.LogTail();
    ASSERT_NE(log.find(reason), std::string::npos)
        << "no diff_id mismatch logged after --prefetch all:\n"
        << log;
    EXPECT_NE(log.find("layer " + layer + " uncompresses to"), std::string::npos) << log;
    auto big = ReadFile(mount.Path("big/blob.bin"));
    EXPECT_FALSE(big.ok()) << "a file of the layer whose diff_id does not match was served";
    EXPECT_THAT(big.status().message(), HasSubstr("Input/output error")) << big.status().ToString();
    auto lower = ReadFile(mount.Path("etc/hostname"));
    EXPECT_TRUE(lower.ok()) << "the other layers must read on: " << lower.status().ToString();
    mount.Unmount();
  }
  {
    ImgfsMount again(cache_.path());
    RunResult r = again.Mount(pushed->ByTag());
    EXPECT_FALSE(r.ok()) << "the recorded diff_id was not compared: " << r.Describe();
    EXPECT_THAT(r.err, HasSubstr("layer " + layer));
    EXPECT_THAT(r.err, HasSubstr(reason));
    EXPECT_FALSE(again.mounted());
  }
  TempDir pull_cache("cache");
  RunResult pull = RunImgfs({"pull", "--cache", pull_cache.path(), pushed->ByTag()});
  EXPECT_EQ(pull.exit_code, 1) << pull.Describe();
  EXPECT_THAT(pull.err, HasSubstr("layer " + layer));
  EXPECT_THAT(pull.err, HasSubstr(reason));
  EXPECT_EQ(pull.out.find("Status: "), std::string::npos) << pull.out;
  // The honest image pulls (its diff_ids are checked the same way) into the same cache.
  RunResult honest = RunImgfs({"pull", "--cache", pull_cache.path(), image_});
  EXPECT_TRUE(honest.ok()) << honest.Describe();
}

INSTANTIATE_TEST_SUITE_P(Formats, LazyPullTest, ::testing::Values("estargz", "zstdchunked"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace imgfs::test
