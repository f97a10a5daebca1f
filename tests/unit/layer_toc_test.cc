// TOC JSON -> LayerIndex (fs/layer/toc.h): the limits on outside data, enforced while parsing,
// and the memory an index of many entries costs. The formats' own tests (layer_estargz_test,
// layer_zstd_chunked_test) cover the schema through whole blobs.
#include "fs/layer/toc.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "base/base64.h"
#include "base/digest.h"
#include "tests/support/sanitizer.h"

namespace imgfs::fs {
namespace {

using ::imgfs::test::PeakMemoryBound;
using ::testing::HasSubstr;

TocBlob Blob() {
  return TocBlob{Sha256Digest("blob"), 1 << 30, UnitCodec::kGzipMember, 1 << 29, "estargz"};
}

std::string Toc(const std::string& entries) {
  return R"({"version":1,"entries":[)" + entries + "]}";
}

// `n` directory entries "d0", "d1", ... joined with commas.
std::string Dirs(size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ',';
    out += R"({"name":"d)" + std::to_string(i) + R"(","type":"dir"})";
  }
  return out;
}

TEST(TocTest, EntryLimitStopsTheParseWhereItIsCrossed) {
  TocLimits limits;
  limits.max_entries = 1000;
  ASSERT_TRUE(IndexFromTocJson(Toc(Dirs(1000)), Blob(), limits).ok());
  // Past the limit the document turns into garbage: a parse that read it all would report
  // invalid JSON; one that stops at the limit names the limit.
  std::string over = R"({"version":1,"entries":[)" + Dirs(1001) + ", this is not JSON";
  Status s = IndexFromTocJson(over, Blob(), limits).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_THAT(s.message(), HasSubstr("more than 1000 entries"));
  EXPECT_THAT(s.message(), HasSubstr(Blob().digest));
}

TEST(TocTest, NamesLongerThanTheKernelTakesAreRefusedNamingTheEntry) {
  std::string component(256, 'n');
  Status s =
      IndexFromTocJson(Toc(R"({"name":"dir/)" + component + R"(","type":"reg"})"), Blob()).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_THAT(s.message(), HasSubstr("TOC entry 0 (dir/nnnn"));
  EXPECT_THAT(s.message(), HasSubstr("longer than NAME_MAX (255)"));
  EXPECT_TRUE(
      IndexFromTocJson(Toc(R"({"name":"dir/)" + component.substr(1) + R"(","type":"reg"})"), Blob())
          .ok());

  std::string deep;
  for (int i = 0; i < 500; ++i) deep += "abcdefghi/";
  s = IndexFromTocJson(Toc(R"({"name":")" + deep + R"(f","type":"reg"})"), Blob()).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_THAT(s.message(), HasSubstr("longer than PATH_MAX (4095 bytes)"));

  s = IndexFromTocJson(
          Toc(R"({"name":"l","type":"symlink","linkName":")" + std::string(5000, 'x') + R"("})"),
          Blob())
          .status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_THAT(s.message(), HasSubstr("symlink target"));
}

TEST(TocTest, XattrLimitsAreEnforced) {
  TocLimits limits;
  limits.max_xattrs_per_entry = 3;
  auto entry_with = [](int n, const std::string& name_prefix, const std::string& value) {
    std::string x;
    for (int i = 0; i < n; ++i) {
      if (i) x += ',';
      x += "\"" + name_prefix + std::to_string(i) + "\":\"" + EncodeBase64(value) + "\"";
    }
    return Toc(R"({"name":"f","type":"dir","xattrs":{)" + x + "}}");
  };
  EXPECT_TRUE(IndexFromTocJson(entry_with(3, "user.a", "v"), Blob(), limits).ok());
  Status s = IndexFromTocJson(entry_with(4, "user.a", "v"), Blob(), limits).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_THAT(s.message(), HasSubstr("more than 3 xattrs"));
  EXPECT_THAT(s.message(), HasSubstr("TOC entry 0 (f)"));

  s = IndexFromTocJson(entry_with(1, "user." + std::string(300, 'k'), "v"), Blob()).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_THAT(s.message(), HasSubstr("xattr name"));
  s = IndexFromTocJson(entry_with(1, "user.big", std::string(kMaxXattrValue + 1, 'v')), Blob())
          .status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_THAT(s.message(), HasSubstr("has a value of"));
}

TEST(TocTest, NamesDockerNeverExtractsAreLeftOutWithTheirChunks) {
  const std::string digest = Sha256Digest("x");
  auto index = IndexFromTocJson(
      Toc(R"({"name":"a/.wh.","type":"reg","size":10,"offset":100,"chunkSize":4,)"
          R"("chunkDigest":")" +
          digest +
          R"("},{"type":"chunk","offset":200,"chunkOffset":4,)"
          R"("chunkSize":6,"chunkDigest":")" +
          digest + R"("},{"name":"b","type":"dir"})"),
      Blob());
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  ASSERT_EQ(index->entries.size(), 1u);
  EXPECT_EQ(index->entries[0].path, "b");
  EXPECT_TRUE(index->units.empty());
}

TEST(TocTest, XattrsAreSortedAndALaterDuplicateWins) {
  std::string toc = Toc(R"({"name":"f","type":"dir","xattrs":{"user.b":")" + EncodeBase64("1") +
                        R"(","user.a":")" + EncodeBase64("2") + R"(","user.b":")" +
                        EncodeBase64("3") + R"("}})");
  auto index = IndexFromTocJson(toc, Blob());
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  using X = std::pair<std::string, std::string>;
  EXPECT_THAT(index->entries.at(0).xattrs,
              ::testing::ElementsAre(X{"user.a", "2"}, X{"user.b", "3"}));
}

TEST(TocTest, UnknownFieldsOfAnyShapeAreSkippedKnownOnesMustHaveTheirType) {
  auto index = IndexFromTocJson(
      R"({"version":1,"extra":{"a":[1,{"b":[]}]},"entries":[{"name":"d","type":"dir",)"
      R"("future":[{"x":null},[true,1.5]],"uid":7}],"tail":"x"})",
      Blob());
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  ASSERT_EQ(index->entries.size(), 1u);
  EXPECT_EQ(index->entries[0].uid, 7u);

  for (const char* bad :
       {R"({"name":{"x":1},"type":"dir"})", R"({"name":"d","type":"dir","uid":[7]})",
        R"([{"name":"d","type":"dir"}])", R"({"name":"d","type":"dir","xattrs":[]})",
        R"({"name":"d","type":"dir","xattrs":{"user.a":{}}})"}) {
    Status s = IndexFromTocJson(Toc(bad), Blob()).status();
    EXPECT_EQ(s.code(), Code::kCorrupt) << bad << " -> " << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr("TOC entry 0")) << bad;
  }
}

TEST(TocTest, DeepNestingIsRefusedNotRecursedInto) {
  std::string deep = R"({"version":1,"entries":[],"x":)" + std::string(100000, '[') +
                     std::string(100000, ']') + "}";
  Status s = IndexFromTocJson(deep, Blob()).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_THAT(s.message(), HasSubstr("levels deep"));
}

// Memory, measured in a child process: the high-water mark of its resident set, reset just
// before the parse (/proc/self/clear_refs), minus what it held then.
long StatusKb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::strlen(key));
  }
  return -1;
}

// Bytes of peak memory per entry of indexing a TOC of `n` empty files, or -1.
double PeakBytesPerEntry(size_t n, TocLimits limits, Status* status) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    std::string json = R"({"version":1,"entries":[)";
    json.reserve(n * 120 + 64);
    char buf[200];
    for (size_t i = 0; i < n; ++i) {
      std::snprintf(buf, sizeof buf,
                    R"(%s{"name":"usr/share/files/f%07zu","type":"reg","size":0,"mode":420,)"
                    R"("uid":0,"gid":0,"modtime":"2024-01-01T00:00:00Z"})",
                    i ? "," : "", i);
      json += buf;
    }
    json += "]}";
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0 || write(fd, "5", 1) != 1) _exit(2);
    close(fd);
    long before = StatusKb("VmRSS:");
    Result<LayerIndex> index = IndexFromTocJson(json, Blob(), limits);
    long peak = StatusKb("VmHWM:");
    std::string report = std::to_string((peak - before) * 1024.0 / n) + " " +
                         std::to_string(static_cast<int>(index.status().code())) + " " +
                         index.status().message().substr(0, 200);
    if (write(fds[1], report.data(), report.size()) < 0) _exit(3);
    _exit(0);
  }
  close(fds[1]);
  std::string report;
  char buf[512];
  for (ssize_t r; (r = read(fds[0], buf, sizeof buf)) > 0;) report.append(buf, r);
  close(fds[0]);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0 || report.empty()) return -1;
  size_t sp1 = report.find(' '), sp2 = report.find(' ', sp1 + 1);
  *status = Status(static_cast<Code>(std::atoi(report.c_str() + sp1 + 1)),
                   sp2 == std::string::npos ? "" : report.substr(sp2 + 1));
  return std::atof(report.c_str());
}

// An index of many entries costs a bounded number of bytes per entry, whatever the JSON, and a
// TOC over the entry limit fails having grown no more than what the entries before the limit
// cost. (A document tree cost ~1 KB per such entry.)
TEST(TocTest, IndexingMemoryIsBoundedPerEntryAndStopsAtTheLimit) {
  constexpr size_t kEntries = 200000;
  Status status;
  double per_entry = PeakBytesPerEntry(kEntries, TocLimits{}, &status);
  ASSERT_GT(per_entry, 0) << "the measuring child failed";
  EXPECT_TRUE(status.ok()) << status.ToString();
  RecordProperty("peak_bytes_per_entry", std::to_string(per_entry));
  std::printf("TOC of %zu entries: peak RSS +%.0f MiB, %.0f bytes per entry\n", kEntries,
              per_entry * kEntries / (1 << 20), per_entry);
  // 600 bytes per entry in the normal build; more under ASan (tests/support/sanitizer.h).
  EXPECT_LT(per_entry, PeakMemoryBound(600 * kEntries) / static_cast<double>(kEntries))
      << "peak bytes per TOC entry";

  TocLimits limits;
  limits.max_entries = kEntries / 10;
  double over = PeakBytesPerEntry(kEntries, limits, &status);
  ASSERT_GT(over, 0) << "the measuring child failed";
  EXPECT_EQ(status.code(), Code::kCorrupt) << status.ToString();
  EXPECT_THAT(status.message(), HasSubstr("entries, the limit"));
  std::printf("TOC of %zu entries over a limit of %zu: peak RSS +%.0f MiB, %.0f bytes per entry\n",
              kEntries, limits.max_entries, over * kEntries / (1 << 20), over);
  // Per entry of the whole document: a tenth of it was kept before the parse stopped.
  EXPECT_LT(over, PeakMemoryBound(600 / 10 * 3 / 2 * kEntries) / static_cast<double>(kEntries))
      << "peak bytes per TOC entry of a refused TOC";
}

}  // namespace
}  // namespace imgfs::fs
