// FUSE passthrough (fs/fuse/passthrough.h) on a real kernel mount of the "layered" image, whose
// second layer holds big/blob.bin (17 MiB): a large file read whole is written out decoded
// into the cache (cache/decoded_files.h); later opens are served by the kernel from that copy,
// so its reads never reach the daemon. The copy is checked by `imgfs cache verify`, a damaged
// one is removed and the file is served through the daemon again, and gc takes copies with
// their blob.
//
// Needs Linux >= 6.9 built with CONFIG_FUSE_PASSTHROUGH and root (the kernel registers backing
// files for CAP_SYS_ADMIN only); the tests say so when the kernel does not take it.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/digest.h"
#include "tests/support/cache_store.h"
#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

constexpr const char* kBigFile = "big/blob.bin";

// The decoded files in `cache`: blobs/sha256/<2>/<hex>.files/<name>, temporary files excluded.
std::vector<std::string> DecodedFilesIn(const std::string& cache) {
  std::vector<std::string> out;
  const std::string top = cache + "/blobs/sha256";
  DIR* d = ::opendir(top.c_str());
  if (!d) return out;
  while (struct dirent* e = ::readdir(d)) {
    if (std::string(e->d_name).size() != 2) continue;
    const std::string sub = top + "/" + e->d_name;
    DIR* s = ::opendir(sub.c_str());
    if (!s) continue;
    while (struct dirent* f = ::readdir(s)) {
      std::string name = f->d_name;
      if (name.size() < 6 || name.substr(name.size() - 6) != ".files") continue;
      DIR* files = ::opendir((sub + "/" + name).c_str());
      if (!files) continue;
      while (struct dirent* g = ::readdir(files)) {
        std::string file = g->d_name;
        if (file.size() == 64) out.push_back(sub + "/" + name + "/" + file);
      }
      ::closedir(files);
    }
    ::closedir(s);
  }
  ::closedir(d);
  return out;
}

// The whole file at `path`, read with read(2) in 1 MiB steps through one descriptor.
Result<std::string> ReadWhole(int fd) {
  std::string out;
  std::string buf(1 << 20, '\0');
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) return Status::IoError(std::string("read: ") + std::strerror(errno));
    if (n == 0) return out;
    out.append(buf.data(), static_cast<size_t>(n));
  }
}

class PassthroughTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = CheckImgfsBinary();
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto pushed = TestWorld::Get().Pushed("layered", ManifestFormat::kOci);
    ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
    image_ = pushed->ByTag();
    auto want = ReadFile(TestWorld::Get().ReferenceRoot("layered") + "/" + kBigFile);
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    want_ = *want;
    ASSERT_GE(want_.size(), 16u << 20);
  }

  RunResult Imgfs(std::vector<std::string> args) {
    args.insert(args.end(), {"--cache", cache_.path()});
    return RunImgfs(args);
  }

  void MountOrFail(ImgfsMount& mount) {
    RunResult r = mount.Mount(image_);
    ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
  }

  // `imgfs stats --format json` of the mount.
  nlohmann::json Stats(const ImgfsMount& mount) {
    RunResult r = RunImgfs({"stats", mount.path(), "--format", "json"});
    EXPECT_TRUE(r.ok()) << r.Describe();
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j.is_discarded() ? nlohmann::json::object() : j;
  }

  static uint64_t BytesRead(const nlohmann::json& stats) {
    uint64_t total = 0;
    for (const auto& l : stats.value("layers", nlohmann::json::array())) {
      total += l.value("bytes_read", uint64_t{0});
    }
    return total;
  }

  // Reads kBigFile through a fresh descriptor and checks its bytes.
  void ExpectBigFileReads(const ImgfsMount& mount) {
    int fd = ::open(mount.Path(kBigFile).c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << mount.Path(kBigFile) << ": " << std::strerror(errno);
    Result<std::string> got = ReadWhole(fd);
    ::close(fd);
    ASSERT_TRUE(got.ok()) << got.status().ToString() << "\n" << mount.LogTail();
    ASSERT_EQ(got->size(), want_.size());
    EXPECT_TRUE(*got == want_) << kBigFile << " read through the mount differs from the image's";
  }

  // Polls `imgfs stats` until the mount has written `n` decoded files.
  void WaitDecodedFilesWritten(const ImgfsMount& mount, uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    nlohmann::json stats;
    while (std::chrono::steady_clock::now() < deadline) {
      stats = Stats(mount);
      if (stats.value("decoded_files_written", uint64_t{0}) >= n) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "the mount wrote no decoded copy of " << kBigFile << " in 30 s: " << stats.dump()
           << "\n" << mount.LogTail();
  }

  TempDir cache_{"cache"};
  std::string image_;
  std::string want_;
};

TEST_F(PassthroughTest, ALargeFileReadWholeIsServedByTheKernelFromItsDecodedCopyAfterwards) {
  {
    ImgfsMount mount(cache_.path());
    MountOrFail(mount);
    ExpectBigFileReads(mount);
    // Written in the background (a daemon also writes what is queued before it ends, but the
    // test's unmount gives it only a second).
    WaitDecodedFilesWritten(mount, 1);
    ASSERT_TRUE(mount.Unmount().ok());
  }
  std::vector<std::string> decoded = DecodedFilesIn(cache_.path());
  ASSERT_EQ(decoded.size(), 1u)
      << "one decoded copy expected: the kernel may not offer FUSE passthrough (it needs Linux "
         ">= 6.9 with CONFIG_FUSE_PASSTHROUGH, and root)";
  auto copy = ReadFile(decoded[0]);
  ASSERT_TRUE(copy.ok()) << copy.status().ToString();
  EXPECT_TRUE(*copy == want_) << decoded[0] << " is not the file's bytes";
  char digest[128] = {};
  ssize_t n = ::getxattr(decoded[0].c_str(), "user.imgfs.sha256", digest, sizeof(digest) - 1);
  ASSERT_GT(n, 0) << decoded[0] << " has no user.imgfs.sha256: " << std::strerror(errno);
  EXPECT_EQ(std::string(digest, static_cast<size_t>(n)), Sha256Digest(want_));

  {
    ImgfsMount mount(cache_.path());
    MountOrFail(mount);
    // Two opens at once: both passthrough, to the same backing file.
    int a = ::open(mount.Path(kBigFile).c_str(), O_RDONLY | O_CLOEXEC);
    int b = ::open(mount.Path(kBigFile).c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(a, 0) << std::strerror(errno);
    ASSERT_GE(b, 0) << std::strerror(errno);
    Result<std::string> got_a = ReadWhole(a), got_b = ReadWhole(b);
    ::close(a);
    ::close(b);
    ASSERT_TRUE(got_a.ok() && got_b.ok()) << mount.LogTail();
    EXPECT_TRUE(*got_a == want_ && *got_b == want_);
    nlohmann::json stats = Stats(mount);
    EXPECT_EQ(stats.value("passthrough_opens", uint64_t{0}), 2u) << stats.dump();
    EXPECT_EQ(BytesRead(stats), 0u) << "the daemon served reads of a passthrough file: "
                                    << stats.dump();
    ASSERT_TRUE(mount.Unmount().ok());
  }

  // verify checks the copy; a damaged one is removed and the file is read through the daemon.
  RunResult verify = Imgfs({"cache", "verify"});
  EXPECT_TRUE(verify.ok()) << verify.Describe();
  EXPECT_THAT(verify.out, HasSubstr("and 1 decoded files"));
  FlipByteInFile(decoded[0], 5 << 20);
  verify = Imgfs({"cache", "verify"});
  EXPECT_EQ(verify.exit_code, 1) << verify.Describe();
  EXPECT_THAT(verify.out, HasSubstr("decoded file sha256:"));
  EXPECT_THAT(verify.out, HasSubstr("; dropped"));
  EXPECT_TRUE(DecodedFilesIn(cache_.path()).empty()) << "verify left the damaged copy";
  {
    ImgfsMount mount(cache_.path());
    MountOrFail(mount);
    ExpectBigFileReads(mount);
    nlohmann::json stats = Stats(mount);
    EXPECT_EQ(stats.value("passthrough_opens", uint64_t{0}), 0u) << stats.dump();
    EXPECT_EQ(BytesRead(stats), want_.size()) << stats.dump();
    WaitDecodedFilesWritten(mount, 1);
    ASSERT_TRUE(mount.Unmount().ok());
  }
  // ... which wrote the copy again; gc takes it with its blob.
  EXPECT_EQ(DecodedFilesIn(cache_.path()).size(), 1u);
  RunResult gc = Imgfs({"cache", "gc", "--max-size", "0"});
  ASSERT_TRUE(gc.ok()) << gc.Describe();
  EXPECT_TRUE(DecodedFilesIn(cache_.path()).empty()) << gc.out;
}

TEST_F(PassthroughTest, AFileOpenThroughThePageCacheIsNotSwitchedUnderItsReaders) {
  ImgfsMount mount(cache_.path());
  MountOrFail(mount);
  int first = ::open(mount.Path(kBigFile).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(first, 0) << std::strerror(errno);
  Result<std::string> got = ReadWhole(first);
  ASSERT_TRUE(got.ok() && *got == want_) << mount.LogTail();
  WaitDecodedFilesWritten(mount, 1);
  // The kernel refuses a passthrough open while the inode is open through the page cache
  // (the open would fail with EIO): this one must be served as the first is.
  int second = ::open(mount.Path(kBigFile).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(second, 0) << std::strerror(errno) << "\n" << mount.LogTail();
  got = ReadWhole(second);
  ASSERT_TRUE(got.ok()) << got.status().ToString() << "\n" << mount.LogTail();
  EXPECT_TRUE(*got == want_);
  EXPECT_EQ(Stats(mount).value("passthrough_opens", uint64_t{0}), 0u);
  ::close(first);
  ::close(second);
  // Once both are closed (the release reaches the daemon soon after close), the next open is
  // passthrough.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  uint64_t opens = 0;
  while (opens == 0 && std::chrono::steady_clock::now() < deadline) {
    ExpectBigFileReads(mount);
    opens = Stats(mount).value("passthrough_opens", uint64_t{0});
  }
  EXPECT_GE(opens, 1u) << mount.LogTail();
  ASSERT_TRUE(mount.Unmount().ok());
}

}  // namespace
}  // namespace imgfs::test
