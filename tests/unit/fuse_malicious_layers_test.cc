// Malicious layers, built byte by byte and served as one-layer images through the streamed
// index pass, the tree and a real FUSE mount (tests/support/served_layer.h): traversal and
// absolute names, symlink games, hard links to missing, later and directory entries,
// duplicates, over-long names and PAX records, lying sizes, truncated blobs, 200,000 entries
// and 10,000-deep paths. Each ends in a clear error or in docker's reading, in bounded time and
// memory, and nothing outside the mount is touched.
//
// Needs /dev/fuse and root (scripts/setup).
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/files.h"
#include "tests/support/sanitizer.h"
#include "tests/support/served_layer.h"
#include "tests/support/tar_builder.h"
#include "tests/support/test_blobs.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

Hdr Typed(const std::string& name, char type, const std::string& link = "") {
  Hdr h;
  h.name = name;
  h.type = type;
  h.linkname = link;
  return h;
}

class MaliciousLayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(access("/dev/fuse", R_OK | W_OK), 0)
        << "/dev/fuse is missing or not usable: run scripts/setup (and load the fuse module)";
  }

  // Mounts `tar` (gzip-compressed, as registries serve layers) and returns the mount point.
  std::string Serve(const std::string& tar) {
    std::string mnt = dir_.MakeDir("mnt");
    Status s = served_.Mount(GzipMember(tar), dir_.Sub("cache"), mnt);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return mnt;
  }

  // The error indexing `tar` gives (uncompressed and gzip must agree).
  Status Refusal(const std::string& tar) {
    Result<fs::LayerIndex> raw = IndexBlob(tar);
    Result<fs::LayerIndex> gz = IndexBlob(GzipMember(tar));
    EXPECT_EQ(raw.status().code(), gz.status().code());
    return raw.status();
  }

  TempDir dir_{"malicious"};
  ServedLayer served_;
};

// The file's content, or "" with a failure.
std::string Content(const std::string& path) {
  Result<std::string> data = ReadFile(path);
  EXPECT_TRUE(data.ok()) << path << ": " << data.status().ToString();
  return data.ok() ? *data : "";
}

struct stat Lstat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

std::vector<std::string> List(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  EXPECT_NE(d, nullptr) << dir;
  if (!d) return names;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  return names;
}

TEST_F(MaliciousLayerTest, AbsoluteAndRootedDotDotNamesStayInsideTheRoot) {
  std::string mnt = Serve(File("/abs/file", "a") + File("/../../etc/passwd2", "p") +
                          File("./x/../y", "y") + End());
  EXPECT_EQ(Content(mnt + "/abs/file"), "a");
  EXPECT_EQ(Content(mnt + "/etc/passwd2"), "p");
  EXPECT_EQ(Content(mnt + "/y"), "y");
  EXPECT_NE(access((dir_.path() + "/etc").c_str(), F_OK), 0) << "something was written outside";
}

TEST_F(MaliciousLayerTest, NamesThatEscapeTheRootAreRefusedNamingThem) {
  for (std::string name : {"../../escape", "a/../../escape", ".."}) {
    Status s = Refusal(File(name, "x") + End());
    EXPECT_EQ(s.code(), Code::kCorrupt) << name;
    EXPECT_THAT(s.message(), HasSubstr("'" + name + "'"));
  }
  Status link = Refusal(Header(Typed("h", '1', "../../etc/shadow")) + End());
  EXPECT_EQ(link.code(), Code::kCorrupt);
  EXPECT_THAT(link.message(), HasSubstr("hard link target"));
}

TEST_F(MaliciousLayerTest, SymlinkGamesNeverReachOutside) {
  // A symlink, then members "through" it: the tree never follows a symlink while it is built
  // (see docs/architecture.md), so nothing outside the root can be reached or replaced; the
  // link targets are served as stored.
  std::string mnt = Serve(Header(Typed("a", '2', "/etc")) + File("a/passwd", "mine") +
                          Header(Typed("up", '2', "../../../../..")) + File("up/x", "x") +
                          Header(Typed("loop", '2', "loop")) + End());
  EXPECT_TRUE(S_ISDIR(Lstat(mnt + "/a").st_mode));
  EXPECT_EQ(Content(mnt + "/a/passwd"), "mine");
  EXPECT_TRUE(S_ISDIR(Lstat(mnt + "/up").st_mode));
  struct stat loop = Lstat(mnt + "/loop");
  EXPECT_TRUE(S_ISLNK(loop.st_mode));
  EXPECT_EQ(loop.st_mode & 07777, 0777u);
  EXPECT_NE(access((dir_.path() + "/x").c_str(), F_OK), 0);
}

TEST_F(MaliciousLayerTest, HardLinksToMissingLaterOrDirectoryEntriesAreRefused) {
  // docker's and containerd's extraction fail on each (link(2) gives ENOENT or EPERM).
  struct Case {
    const char* what;
    std::string tar;
  };
  Hdr dir = Typed("d", '5');
  std::vector<Case> cases = {
      {"missing", Header(Typed("h", '1', "missing")) + End()},
      {"later", Header(Typed("h", '1', "later")) + File("later", "x") + End()},
      {"directory", Header(dir) + Header(Typed("h", '1', "d")) + End()},
  };
  for (const Case& c : cases) {
    Result<fs::LayerIndex> index = IndexBlob(c.tar);
    ASSERT_TRUE(index.ok()) << c.what << ": " << index.status().ToString();
    auto layer = std::make_shared<const fs::LayerIndex>(std::move(index).value());
    Result<std::unique_ptr<fs::Tree>> tree = fs::Tree::Build({layer});
    EXPECT_EQ(tree.status().code(), Code::kCorrupt) << c.what;
    EXPECT_THAT(tree.status().message(), HasSubstr("hard link 'h'")) << c.what;
  }
  std::string mnt = Serve(File("t", "target") + Header(Typed("h", '1', "t")) + End());
  EXPECT_EQ(Lstat(mnt + "/h").st_ino, Lstat(mnt + "/t").st_ino);
  EXPECT_EQ(Lstat(mnt + "/h").st_nlink, 2u);
}

TEST_F(MaliciousLayerTest, DuplicatesAreReadAsTheLastOne) {
  std::string mnt = Serve(File("f", "first") + File("f", "second") + File("d", "file") +
                          Header(Typed("d", '5')) + File("d/in", "in") + Header(Typed("e", '5')) +
                          File("e/in", "in") + File("e", "file again") + End());
  EXPECT_EQ(Content(mnt + "/f"), "second");
  EXPECT_TRUE(S_ISDIR(Lstat(mnt + "/d").st_mode));
  EXPECT_EQ(Content(mnt + "/d/in"), "in");
  EXPECT_EQ(Content(mnt + "/e"), "file again");
  EXPECT_EQ(List(mnt).size(), 3u);
}

TEST_F(MaliciousLayerTest, OverlongNamesAndPaxRecordsAreRefusedAndSiblingsAlwaysListed) {
  // The case: a 1 MiB PAX path once mounted and left its directory listing empty.
  Status huge = Refusal(File("dir/a", "") +
                        PaxHeader({{"path", "dir/" + std::string(1 << 20, 'p')}}) + File("x", "") +
                        File("dir/b", "") + End());
  EXPECT_EQ(huge.code(), Code::kCorrupt);
  EXPECT_THAT(huge.message(), HasSubstr("larger than the limit"));
  Status name = Refusal(PaxHeader({{"path", "dir/" + std::string(256, 'n')}}) + File("x", "") +
                        End());
  EXPECT_EQ(name.code(), Code::kCorrupt);
  EXPECT_THAT(name.message(), HasSubstr("NAME_MAX"));
  Status record = Refusal(PaxHeader({{"SCHILY.xattr.user.big", std::string(70000, 'v')}}) +
                          File("x", "") + End());
  EXPECT_EQ(record.code(), Code::kCorrupt);
  EXPECT_THAT(record.message(), HasSubstr("'x'"));

  // At the limit, every name of the directory is listed.
  std::string tar;
  for (char c = 'a'; c <= 'z'; ++c) {
    tar += PaxHeader({{"path", "dir/" + std::string(255, c)}}) + File("x", "");
  }
  std::string mnt = Serve(tar + End());
  EXPECT_EQ(List(mnt + "/dir").size(), 26u);
}

TEST_F(MaliciousLayerTest, LyingSizesAndTruncatedBlobsAreRefused) {
  std::string good = File("a", std::string(1000, 'a')) + File("b", "bb") + End();
  // A size larger than the data: the archive ends inside the member.
  Hdr large;
  large.name = "a";
  large.size = 100000;
  EXPECT_EQ(Refusal(Header(large) + Padded("short") + End()).code(), Code::kCorrupt);
  // A size smaller than the data: the rest is read as a header, whose checksum fails.
  Hdr small;
  small.name = "a";
  small.size = 10;
  Status smaller = Refusal(Header(small) + Padded(std::string(2000, 'x')) + End());
  EXPECT_EQ(smaller.code(), Code::kCorrupt);
  EXPECT_THAT(smaller.message(), HasSubstr("checksum"));
  // A PAX size that lies the same way.
  EXPECT_EQ(Refusal(PaxHeader({{"size", "99999999"}}) + File("a", "x") + End()).code(),
            Code::kCorrupt);
  // Truncated blobs, in the middle of a header, of data, of a gzip member.
  EXPECT_EQ(Refusal(good.substr(0, 700)).code(), Code::kCorrupt);
  EXPECT_EQ(Refusal(good.substr(0, 1536 + 100)).code(), Code::kCorrupt);
  std::string gz = GzipMember(good);
  Result<fs::LayerIndex> cut = IndexBlob(gz.substr(0, gz.size() / 2));
  EXPECT_EQ(cut.status().code(), Code::kCorrupt) << cut.status().ToString();
}

TEST_F(MaliciousLayerTest, TenThousandDeepPathsAreRefused) {
  std::string deep = "a";
  for (int i = 1; i < 10000; ++i) deep += "/a";
  Status s = Refusal(PaxHeader({{"path", deep}}) + File("x", "") + End());
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_THAT(s.message(), HasSubstr("PATH_MAX"));
}

// A field of /proc/self/status in KiB ("VmRSS", "VmHWM").
long StatusKib(const std::string& field) {
  Result<std::string> status = ReadFile("/proc/self/status");
  if (!status.ok()) return -1;
  size_t at = status->find(field + ":");
  return at == std::string::npos ? -1 : std::atol(status->c_str() + at + field.size() + 1);
}

TEST_F(MaliciousLayerTest, TwoHundredThousandEntriesMountListedInFull) {
  std::string tar;
  tar.reserve(200000 * 512 + 1024);
  Hdr h;
  h.size = 0;
  for (int i = 0; i < 200000; ++i) {
    h.name = "many/f" + std::to_string(i);
    tar += Header(h);
  }
  tar += End();
  std::string blob = GzipMember(tar);
  tar.clear();
  tar.shrink_to_fit();
  // Peak RSS from here on: writing 5 to clear_refs resets VmHWM to the current RSS.
  ASSERT_TRUE(WriteFile("/proc/self/clear_refs", "5").ok());
  long before = StatusKib("VmRSS");
  auto start = std::chrono::steady_clock::now();
  std::string mnt = dir_.MakeDir("mnt");
  Status s = served_.Mount(blob, dir_.Sub("cache"), mnt);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(List(mnt + "/many").size(), 200000u);
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                  start)
                     .count();
  EXPECT_LT(seconds, ScaledSeconds(60));
  // Index, tree and listing: well under 200 MiB more than before (in the normal build; more
  // under ASan, tests/support/sanitizer.h).
  long grown_mib = (StatusKib("VmHWM") - before) / 1024;
  EXPECT_LT(static_cast<uint64_t>(grown_mib), PeakMemoryBound(uint64_t{200} << 20) >> 20)
      << "peak RSS grew by " << grown_mib << " MiB";
  std::printf("200,000 entries: mounted and listed in %lld s, peak RSS +%ld MiB\n",
              static_cast<long long>(seconds), grown_mib);
}

}  // namespace
}  // namespace imgfs::test
