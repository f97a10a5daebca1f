// Lazy pulling of eStargz and zstd:chunked images made by the real converter: containerd with a
// private root and socket, `ctr-remote image convert --estargz` / `--zstdchunked` of the
// standard "layered" image, pushed to the test registry. A mount must equal `umoci unpack` of
// the original image, and reading one small file must not fetch the layers' contents.
#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/process.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

class WorldEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { TestWorld::Reset(); }
};
[[maybe_unused]] auto* const kWorldEnvironment =
    ::testing::AddGlobalTestEnvironment(new WorldEnvironment);

// A containerd of our own: its root, state and socket live in a temp dir, so nothing of the
// host's containerd (if any) is touched, and it stops with the test binary.
class PrivateContainerd {
 public:
  PrivateContainerd() : dir_("containerd") {}

  Status Start() {
    for (const char* tool : {"/usr/bin/containerd", "/usr/bin/ctr-remote"}) {
      if (!IsExecutable(tool)) {
        return Status::NotFound(std::string(tool) +
                                " is not installed (packages containerd and "
                                "stargz-snapshotter): run scripts/setup");
      }
    }
    socket_ = dir_.Sub("containerd.sock");
    std::string config =
        "version = 2\n"
        "root = \"" + dir_.MakeDir("root") + "\"\n"
        "state = \"" + dir_.MakeDir("state") + "\"\n"
        "disabled_plugins = [\"io.containerd.grpc.v1.cri\", "
        "\"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", "
        "\"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.aufs\"]\n"
        "[grpc]\n  address = \"" + socket_ + "\"\n"
        "[ttrpc]\n  address = \"" + socket_ + ".ttrpc\"\n";
    IMGFS_RETURN_IF_ERROR(WriteFile(dir_.Sub("config.toml"), config));
    IMGFS_RETURN_IF_ERROR(process_.Start(
        {"/usr/bin/containerd", "--config", dir_.Sub("config.toml")}, dir_.Sub("out.log"),
        dir_.Sub("containerd.log")));
    for (int i = 0; i < 300; ++i) {
      if (RunCommand({"/usr/bin/ctr-remote", "--address", socket_, "version"}).ok()) {
        return Status::Ok();
      }
      if (!process_.running()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    auto log = ReadFile(dir_.Sub("containerd.log"));
    return Status::Unavailable("containerd did not start: " + (log.ok() ? *log : ""));
  }

  // `ctr-remote --address SOCK ARGS...`
  Status Ctr(std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/ctr-remote", "--address", socket_});
    RunOptions options;
    options.timeout_seconds = 600;
    return RunOk(args, options);
  }

 private:
  TempDir dir_;
  std::string socket_;
  BackgroundProcess process_;
};

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
  std::string image;  // host/repo:tag in the test registry
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
      c.image = pushed->host + "/imgfs/layered-" + kind + ":latest";
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
  }

  static PrivateContainerd* containerd_;
  static Status setup_;
  static std::map<std::string, Converted>* converted_;
  std::string image_;
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
      << "reading one small file stored " << after_one_file << " bytes of "
      << after_everything << ": the layer was not pulled lazily";
}

INSTANTIATE_TEST_SUITE_P(Formats, LazyPullTest, ::testing::Values("estargz", "zstdchunked"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace imgfs::test
