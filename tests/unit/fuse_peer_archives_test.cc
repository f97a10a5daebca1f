// Other tar readers' test suites as layers: every archive of Go's archive/tar testdata (the
// reader docker and containerd extract with) and CPython's testtar.tar, each as a one-layer
// blob, uncompressed and gzip-compressed, indexed by the streamed pass, merged and mounted
// through FUSE. The mount must equal what GNU tar (or bsdtar, where GNU tar fails on the
// archive) extracts from it, or, for archives those readers and Go reject, imgfs must refuse
// the layer with a clear error. The table below names the expected outcome of each archive
// and why; an archive the packages ship that the table does not name fails the test.
//
// Needs golang-1.19-src, libpython3.11-testsuite, tar, bsdtar (libarchive-tools), bzip2
// (scripts/setup), /dev/fuse and root (the extractions restore owners and device nodes).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/files.h"
#include "tests/support/served_layer.h"
#include "tests/support/test_blobs.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

constexpr const char* kGoTestdata = "/usr/share/go-1.19/src/archive/tar/testdata";
constexpr const char* kPythonTesttar = "/usr/lib/python3.11/test/testtar.tar";

enum class Outcome {
  kGnuTar,   // the mount equals GNU tar's extraction
  kBsdtar,   // the mount equals bsdtar's extraction (GNU tar fails on the archive)
  kRefused,  // indexing fails with kCorrupt whose message contains `error`
};

struct Archive {
  const char* name;  // file name in the Go testdata, or "testtar.tar"
  Outcome outcome;
  const char* error;  // kRefused: a part of the message
  bool contents;      // compare file contents (false: a 60 GB sparse file, metadata only)
  const char* why;
};

const Archive kArchives[] = {
    {"file-and-dir.tar", Outcome::kGnuTar, "", true, "a file and a directory"},
    {"gnu-incremental.tar", Outcome::kGnuTar, "", true, "GNU dumpdir 'D' members: directories"},
    {"gnu-long-nul.tar", Outcome::kGnuTar, "", true, "a GNU long name cut at its first NUL"},
    {"gnu-multi-hdrs.tar", Outcome::kGnuTar, "", true, "several GNU long names: the last wins"},
    {"gnu-nil-sparse-data.tar", Outcome::kGnuTar, "", true, "old GNU sparse, all data"},
    {"gnu-nil-sparse-hole.tar", Outcome::kGnuTar, "", true, "old GNU sparse, all hole"},
    {"gnu-not-utf8.tar", Outcome::kGnuTar, "", true, "a name that is not UTF-8"},
    {"gnu-sparse-big.tar", Outcome::kGnuTar, "", false, "old GNU sparse, 60 GB of holes"},
    {"gnu-utf8.tar", Outcome::kGnuTar, "", true, "a long UTF-8 name"},
    {"gnu.tar", Outcome::kGnuTar, "", true, "old GNU headers"},
    {"hardlink.tar", Outcome::kGnuTar, "", true, "a hard link"},
    {"hdr-only.tar", Outcome::kGnuTar, "", true, "every type, sizes on header-only types"},
    {"invalid-go17.tar", Outcome::kGnuTar, "", true, "a prefix field written by Go 1.7"},
    {"issue10968.tar", Outcome::kRefused, "bad number in size", true, "not a tar header"},
    {"issue11169.tar", Outcome::kRefused, "checksum field is not a number", true,
     "a truncated header"},
    {"issue12435.tar", Outcome::kRefused, "", true, "garbage numbers in a header"},
    {"neg-size.tar", Outcome::kRefused, "", true, "a negative size"},
    {"nil-uid.tar", Outcome::kGnuTar, "", true, "an all-NUL uid field"},
    {"pax-bad-hdr-file.tar", Outcome::kRefused, "PAX record", true, "a malformed PAX record"},
    {"pax-bad-hdr-large.tar.bz2", Outcome::kRefused, "larger than the limit", true,
     "a PAX header over Go's 1 MiB"},
    {"pax-bad-mtime-file.tar", Outcome::kRefused, "bad PAX mtime", true,
     "Go refuses the mtime; GNU tar ignores it"},
    {"pax-global-records.tar", Outcome::kBsdtar, "", true,
     "global records change nothing (GNU tar applies their path)"},
    {"pax-multi-hdrs.tar", Outcome::kGnuTar, "", true, "several PAX headers: the last applies"},
    {"pax-nil-sparse-data.tar", Outcome::kGnuTar, "", true, "PAX 1.0 sparse, all data"},
    {"pax-nil-sparse-hole.tar", Outcome::kGnuTar, "", true, "PAX 1.0 sparse, all hole"},
    {"pax-nul-path.tar", Outcome::kRefused, "NUL", true,
     "Go refuses a NUL in a PAX path; GNU tar cuts the name there"},
    {"pax-nul-xattrs.tar", Outcome::kRefused, "NUL", true, "a NUL in a PAX key"},
    {"pax-path-hdr.tar", Outcome::kGnuTar, "", true, "a PAX path record"},
    {"pax-pos-size-file.tar", Outcome::kGnuTar, "", true, "a PAX size record"},
    {"pax-records.tar", Outcome::kGnuTar, "", true, "unknown PAX records"},
    {"pax-sparse-big.tar", Outcome::kGnuTar, "", false, "PAX sparse, 60 GB of holes"},
    {"pax.tar", Outcome::kGnuTar, "", true, "PAX long names and times"},
    {"sparse-formats.tar", Outcome::kBsdtar, "", true,
     "every sparse format (GNU tar stops at an old GNU member)"},
    {"star.tar", Outcome::kGnuTar, "", true, "star headers"},
    {"trailing-slash.tar", Outcome::kGnuTar, "", true, "a PAX directory name with a slash"},
    {"ustar-file-devs.tar", Outcome::kGnuTar, "", true, "device numbers on a file"},
    {"ustar-file-reg.tar", Outcome::kGnuTar, "", true, "a plain ustar file"},
    {"ustar.tar", Outcome::kGnuTar, "", true, "ustar prefix names"},
    {"v7.tar", Outcome::kGnuTar, "", true, "V7 headers"},
    {"writer-big-long.tar", Outcome::kRefused, "ends inside", true, "a 16 GiB member, truncated"},
    {"writer-big.tar", Outcome::kRefused, "ends inside", true, "a 16 GiB member, truncated"},
    {"writer.tar", Outcome::kGnuTar, "", true, "what Go's writer writes"},
    {"xattrs.tar", Outcome::kGnuTar, "", true, "SCHILY xattrs"},
    {"testtar.tar", Outcome::kGnuTar, "", true,
     "CPython's tarfile suite (Solaris 'X' headers read as 'x', uid 2^32-1 is root's)"},
};

std::string ArchivePath(const std::string& name) {
  return name == "testtar.tar" ? kPythonTesttar : std::string(kGoTestdata) + "/" + name;
}

// Output of a shell command, or an error with its exit status.
Result<std::string> Shell(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return Status::Internal("popen failed: " + cmd);
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  if (rc != 0) return Status::Internal(cmd + " exited with status " + std::to_string(rc));
  return out;
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// Directories an extraction made without an archive member of their own (parents of deeper
// names) get imgfs's attributes for implied directories: mtime 0 (their extraction time says
// nothing about the image).
void ZeroImpliedDirectoryTimes(const std::string& root, const std::set<std::string>& members) {
  namespace stdfs = std::filesystem;
  for (auto it = stdfs::recursive_directory_iterator(root); it != stdfs::end(it); ++it) {
    std::error_code ec;
    if (!it->is_directory(ec) || it->is_symlink(ec)) continue;
    std::string rel = stdfs::relative(it->path(), root).string();
    if (members.count(rel)) continue;
    struct timespec times[2] = {{0, 0}, {0, 0}};
    utimensat(AT_FDCWD, it->path().c_str(), times, AT_SYMLINK_NOFOLLOW);
  }
}

// The member names `tool` lists, cleaned the simple way ("./a/b/" -> "a/b").
std::set<std::string> Members(const std::string& tool, const std::string& tar) {
  std::set<std::string> names;
  // A reader that stumbles late still lists what it read.
  Result<std::string> listing = Shell(tool + " -tf " + Quote(tar) + " 2>/dev/null || true");
  std::string text = listing.ok() ? *listing : "";
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    std::string name = text.substr(start, nl - start);
    start = nl + 1;
    while (name.rfind("./", 0) == 0) name.erase(0, 2);
    while (!name.empty() && name[0] == '/') name.erase(0, 1);
    while (!name.empty() && name.back() == '/') name.pop_back();
    names.insert(name);
  }
  return names;
}

class PeerArchiveTest : public ::testing::TestWithParam<Archive> {};

TEST(PeerArchivesTableTest, NamesEveryArchiveThePackagesShip) {
  DIR* d = opendir(kGoTestdata);
  ASSERT_NE(d, nullptr) << kGoTestdata << " is missing: run scripts/setup (golang-1.19-src)";
  std::set<std::string> shipped;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.ends_with(".tar") || n.ends_with(".tar.bz2")) shipped.insert(n);
  }
  closedir(d);
  ASSERT_EQ(access(kPythonTesttar, R_OK), 0)
      << kPythonTesttar << " is missing: run scripts/setup (libpython3.11-testsuite)";
  shipped.insert("testtar.tar");
  std::set<std::string> named;
  for (const Archive& a : kArchives) named.insert(a.name);
  EXPECT_EQ(named, shipped);
}

TEST_P(PeerArchiveTest, MountEqualsTheExtractionOrIsRefused) {
  const Archive& a = GetParam();
  std::string path = ArchivePath(a.name);
  ASSERT_EQ(access(path.c_str(), R_OK), 0)
      << path << " is missing: run scripts/setup (golang-1.19-src, libpython3.11-testsuite)";
  TempDir dir("peer");
  std::string tar_path = path;
  if (tar_path.ends_with(".bz2")) {
    tar_path = dir.Sub("archive.tar");
    ASSERT_TRUE(Shell("bzip2 -dc " + Quote(path) + " > " + Quote(tar_path)).ok())
        << "bzip2 is needed: run scripts/setup";
  }
  Result<std::string> tar = ReadFile(tar_path);
  ASSERT_TRUE(tar.ok()) << tar.status().ToString();

  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip layer" : "uncompressed layer");
    std::string blob = gzip ? GzipMember(*tar) : *tar;
    if (a.outcome == Outcome::kRefused) {
      Result<fs::LayerIndex> index = IndexBlob(blob);
      ASSERT_FALSE(index.ok()) << a.why;
      EXPECT_EQ(index.status().code(), Code::kCorrupt) << index.status().ToString();
      EXPECT_THAT(index.status().message(), ::testing::HasSubstr(a.error));
      continue;
    }
    std::string tool = a.outcome == Outcome::kGnuTar
                           ? "tar --numeric-owner --xattrs --xattrs-include='*'"
                           : "bsdtar --numeric-owner";
    std::string ref = dir.MakeDir(gzip ? "ref-gz" : "ref");
    Result<std::string> extracted = Shell(tool + " -xpf " + Quote(tar_path) + " -C " + Quote(ref) +
                                          " 2>&1");
    ASSERT_TRUE(extracted.ok()) << "the reference extraction failed (run scripts/setup for "
                                << "tar and bsdtar): " << extracted.status().ToString();
    ZeroImpliedDirectoryTimes(ref,
                              Members(a.outcome == Outcome::kGnuTar ? "tar" : "bsdtar", tar_path));
    std::string mnt = dir.MakeDir(gzip ? "mnt-gz" : "mnt");
    ServedLayer served;
    Status s = served.Mount(blob, dir.Sub(gzip ? "cache-gz" : "cache"), mnt);
    ASSERT_TRUE(s.ok()) << a.why << ": " << s.ToString();
    TreeCompareOptions options;
    options.compare_contents = a.contents;
    TreeDiff diff = CompareTrees(ref, mnt, options);
    EXPECT_TRUE(diff.empty()) << a.name << " (" << a.why << "):\n" << diff.ToString();
    EXPECT_GT(diff.entries_compared, 0u);
  }
}

std::string ParamName(const ::testing::TestParamInfo<Archive>& info) {
  std::string n;
  for (const char* p = info.param.name; *p; ++p) n.push_back(std::isalnum(*p) ? *p : '_');
  return n;
}

INSTANTIATE_TEST_SUITE_P(GoAndPython, PeerArchiveTest, ::testing::ValuesIn(kArchives), ParamName);

}  // namespace
}  // namespace imgfs::test
