#include "fs/layer/tar.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "tests/support/tar_builder.h"

namespace imgfs::fs {
namespace {

// --- building tars by hand -------------------------------------------------------------------

using test::End;
using test::File;
using test::GnuLong;
using test::Hdr;
using test::Header;
using test::Padded;
using test::PaxHeader;
using test::PaxRecords;
using test::SetChecksum;

struct Parsed {
  std::vector<Entry> entries;
  std::vector<uint64_t> data_offsets;
  Status status;
};

// Feeds `tar` in pieces of `piece` bytes (0: all at once).
Parsed Parse(const std::string& tar, size_t piece = 0) {
  Parsed p;
  TarReader reader([&p](Entry e, uint64_t off) {
    p.entries.push_back(std::move(e));
    p.data_offsets.push_back(off);
    return Status::Ok();
  });
  if (piece == 0) piece = tar.size() ? tar.size() : 1;
  for (size_t i = 0; i < tar.size() && p.status.ok(); i += piece) {
    p.status = reader.Feed(std::string_view(tar).substr(i, piece));
  }
  if (p.status.ok()) p.status = reader.Finish();
  return p;
}

// --- tests ---------------------------------------------------------------------------------------

TEST(TarReaderTest, ReadsEveryUstarTypeWithAttributes) {
  std::string tar;
  Hdr dir;
  dir.name = "etc/";
  dir.type = '5';
  dir.mode = 01755;
  tar += Header(dir);
  tar += File("etc/hosts", "127.0.0.1 localhost\n");
  Hdr sym;
  sym.name = "etc/link";
  sym.type = '2';
  sym.linkname = "../usr/lib/target";
  tar += Header(sym);
  Hdr hard;
  hard.name = "etc/hard";
  hard.type = '1';
  hard.linkname = "./etc//hosts";
  tar += Header(hard);
  Hdr chr;
  chr.name = "dev/null";
  chr.type = '3';
  chr.devmajor = 1;
  chr.devminor = 3;
  tar += Header(chr);
  Hdr blk;
  blk.name = "dev/sda";
  blk.type = '4';
  blk.devmajor = 8;
  blk.devminor = 0;
  tar += Header(blk);
  Hdr fifo;
  fifo.name = "run/fifo";
  fifo.type = '6';
  fifo.mode = 0600;
  tar += Header(fifo);
  tar += End();

  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries.size(), 7u);
  EXPECT_EQ(p.entries[0].path, "etc");
  EXPECT_EQ(p.entries[0].type, EntryType::kDirectory);
  EXPECT_EQ(p.entries[0].mode, 01755u);
  EXPECT_EQ(p.entries[1].path, "etc/hosts");
  EXPECT_EQ(p.entries[1].type, EntryType::kRegular);
  EXPECT_EQ(p.entries[1].size, 20u);
  EXPECT_EQ(p.entries[1].uid, 1000u);
  EXPECT_EQ(p.entries[1].mtime_sec, 1700000000);
  EXPECT_EQ(p.data_offsets[1], 1024u);  // after the dir header and its own header
  EXPECT_EQ(p.entries[2].type, EntryType::kSymlink);
  EXPECT_EQ(p.entries[2].link_target, "../usr/lib/target");  // symlinks stay as stored
  EXPECT_EQ(p.entries[3].type, EntryType::kHardlink);
  EXPECT_EQ(p.entries[3].link_target, "etc/hosts");  // hard links are cleaned
  EXPECT_EQ(p.entries[4].type, EntryType::kCharDevice);
  EXPECT_EQ(p.entries[4].dev_major, 1u);
  EXPECT_EQ(p.entries[4].dev_minor, 3u);
  EXPECT_EQ(p.entries[5].type, EntryType::kBlockDevice);
  EXPECT_EQ(p.entries[5].dev_major, 8u);
  EXPECT_EQ(p.entries[6].type, EntryType::kFifo);
  EXPECT_EQ(p.entries[6].mode, 0600u);
}

TEST(TarReaderTest, PiecesOfAnySizeGiveTheSameResult) {
  std::string long_path = std::string(150, 'p') + "/" + std::string(149, 'p');
  std::string tar = File("a", std::string(1000, 'x')) + PaxHeader({{"path", long_path}}) +
                    File("short", "data") + File("b", "") + End();
  Parsed whole = Parse(tar);
  ASSERT_TRUE(whole.status.ok()) << whole.status.ToString();
  for (size_t piece : {1, 7, 511, 512, 513, 4096}) {
    Parsed p = Parse(tar, piece);
    ASSERT_TRUE(p.status.ok()) << piece << ": " << p.status.ToString();
    ASSERT_EQ(p.entries.size(), whole.entries.size());
    for (size_t i = 0; i < p.entries.size(); ++i) {
      EXPECT_EQ(p.entries[i].path, whole.entries[i].path);
      EXPECT_EQ(p.data_offsets[i], whole.data_offsets[i]);
    }
  }
  EXPECT_EQ(whole.entries[1].path, long_path);
}

TEST(TarReaderTest, UstarPrefixIsJoinedToName) {
  Hdr h;
  h.prefix = "usr/share/very/deep";
  std::string tar = File("file.txt", "x", h) + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok());
  EXPECT_EQ(p.entries[0].path, "usr/share/very/deep/file.txt");
}

TEST(TarReaderTest, GnuHeadersIgnoreThePrefixArea) {
  Hdr h;
  h.format = Hdr::kGnu;
  std::string header = Header([&] {
    h.name = "file.txt";
    h.size = 1;
    return h;
  }());
  header[345] = '\x12';  // old GNU keeps atime here; it is not a prefix
  SetChecksum(header);
  Parsed p = Parse(header + Padded("x") + End());
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  EXPECT_EQ(p.entries[0].path, "file.txt");
}

TEST(TarReaderTest, PaxOverridesNameLinkSizeOwnersTimeAndAddsXattrs) {
  std::string long_path = "dir/" + std::string(150, 'n') + "/" + std::string(120, 'm');
  std::string long_link = std::string(200, 'l');
  std::string binary_value("caps\0\x01\xff", 7);
  std::string tar;
  tar += PaxHeader({{"path", long_path},
                    {"uid", "4000000000"},
                    {"gid", "70000"},
                    {"mtime", "1700000000.123456789"},
                    {"SCHILY.xattr.security.capability", binary_value},
                    {"SCHILY.xattr.user.note", "hello"},
                    {"uname", "ignored"}});
  tar += File("short-name-ignored", "content");
  tar += PaxHeader({{"linkpath", long_link}, {"mtime", "-1.25"}});
  Hdr sym;
  sym.name = "sym";
  sym.type = '2';
  sym.linkname = "ignored";
  tar += Header(sym);
  tar += End();

  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries.size(), 2u);
  const Entry& f = p.entries[0];
  EXPECT_EQ(f.path, long_path);
  EXPECT_EQ(f.uid, 4000000000u);
  EXPECT_EQ(f.gid, 70000u);
  EXPECT_EQ(f.mtime_sec, 1700000000);
  EXPECT_EQ(f.mtime_nsec, 123456789u);
  EXPECT_EQ(f.size, 7u);
  EXPECT_THAT(f.xattrs, ::testing::UnorderedElementsAre(
                            std::make_pair(std::string("security.capability"), binary_value),
                            std::make_pair(std::string("user.note"), std::string("hello"))));
  const Entry& s = p.entries[1];
  EXPECT_EQ(s.path, "sym");
  EXPECT_EQ(s.link_target, long_link);
  EXPECT_EQ(s.mtime_sec, -2);
  EXPECT_EQ(s.mtime_nsec, 750000000u);
  EXPECT_EQ(s.uid, 1000u);  // the first PAX header applied to its member only
}

TEST(TarReaderTest, PaxSizeOverridesHeaderSize) {
  std::string data(700, 'z');
  Hdr h;
  h.name = "big";
  h.size = 0;  // as if the real size did not fit the field
  std::string tar = PaxHeader({{"size", "700"}}) + Header(h) + Padded(data) + File("next", "n") +
                    End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries.size(), 2u);
  EXPECT_EQ(p.entries[0].size, 700u);
  EXPECT_EQ(p.entries[1].path, "next");
}

TEST(TarReaderTest, LibarchiveXattrsAreDecoded) {
  std::string tar = PaxHeader({{"LIBARCHIVE.xattr.user.a%3Db", "aGVsbG8="}}) + File("f", "") +
                    End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries[0].xattrs.size(), 1u);
  EXPECT_EQ(p.entries[0].xattrs[0].first, "user.a=b");
  EXPECT_EQ(p.entries[0].xattrs[0].second, "hello");
}

TEST(TarReaderTest, EmptyXattrRecordsAreDropped) {
  // An empty pax value deletes the keyword; docker's and umoci's extraction omit the xattr.
  std::string tar = PaxHeader({{"SCHILY.xattr.user.empty", ""}, {"SCHILY.xattr.user.kept", "v"}}) +
                    File("f", "") + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries[0].xattrs.size(), 1u);
  EXPECT_EQ(p.entries[0].xattrs[0].first, "user.kept");
}

TEST(TarReaderTest, GlobalPaxRecordsChangeNothing) {
  // Go returns a 'g' header as a member of its own, which docker and containerd skip: its
  // records reach no member, and the extension records pending before it are lost.
  std::string tar = PaxHeader({{"mtime", "1234.5"},
                               {"uid", "7"},
                               {"path", "not-for-anyone"},
                               {"SCHILY.xattr.user.g", "v"}},
                              'g') +
                    File("a", "1") + PaxHeader({{"path", "lost"}}) +
                    PaxHeader({{"gid", "9"}}, 'g') + File("b", "2") + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries.size(), 2u);
  EXPECT_EQ(p.entries[0].path, "a");
  EXPECT_EQ(p.entries[1].path, "b");
  for (const Entry& e : p.entries) {
    EXPECT_EQ(e.mtime_sec, 1700000000);
    EXPECT_EQ(e.mtime_nsec, 0u);
    EXPECT_EQ(e.uid, 1000u);
    EXPECT_EQ(e.gid, 1000u);
    EXPECT_TRUE(e.xattrs.empty());
  }
  // A malformed global header is still an error.
  std::string bad = "99 path=x\n";
  Hdr g;
  g.name = "global";
  g.type = 'g';
  g.size = bad.size();
  EXPECT_EQ(Parse(Header(g) + Padded(bad) + File("f", "") + End()).status.code(), Code::kCorrupt);
}

TEST(TarReaderTest, GnuLongNameAndLongLink) {
  std::string long_name = std::string(180, 'a') + "/file";
  std::string long_target = std::string(160, 't') + "/target";
  Hdr link;
  link.format = Hdr::kGnu;
  link.name = "truncated";
  link.type = '1';
  link.linkname = "truncated";
  std::string tar = GnuLong('L', long_name) + GnuLong('K', long_target) + Header(link) + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries.size(), 1u);
  EXPECT_EQ(p.entries[0].path, long_name);
  EXPECT_EQ(p.entries[0].type, EntryType::kHardlink);
  EXPECT_EQ(p.entries[0].link_target, long_target);
}

TEST(TarReaderTest, Base256NumbersAndV7Directories) {
  Hdr h;
  h.base256_uid = true;
  h.uid = 3000000000u;
  h.format = Hdr::kV7;
  h.type = '\0';
  h.name = "olddir/";
  std::string tar = Header(h) + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  EXPECT_EQ(p.entries[0].uid, 3000000000u);
  EXPECT_EQ(p.entries[0].type, EntryType::kDirectory);
  EXPECT_EQ(p.entries[0].path, "olddir");
}

TEST(TarReaderTest, WhiteoutsAndOpaqueMarkers) {
  std::string tar = File("etc/.wh.passwd", "") + File("var/cache/.wh..wh..opq", "") +
                    File(".wh.top", "") + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok());
  ASSERT_EQ(p.entries.size(), 3u);
  EXPECT_EQ(p.entries[0].path, "etc/passwd");
  EXPECT_TRUE(p.entries[0].whiteout);
  EXPECT_EQ(p.entries[1].path, "var/cache");
  EXPECT_TRUE(p.entries[1].opaque);
  EXPECT_FALSE(p.entries[1].whiteout);
  EXPECT_EQ(p.entries[2].path, "top");
  EXPECT_TRUE(p.entries[2].whiteout);
}

TEST(TarReaderTest, NamesAreCleanedAndEscapesRejected) {
  Parsed p = Parse(File("./usr//bin/./x", "") + File("/abs/y", "") + File("./", "") + End());
  ASSERT_TRUE(p.status.ok());
  EXPECT_EQ(p.entries[0].path, "usr/bin/x");
  EXPECT_EQ(p.entries[1].path, "abs/y");
  EXPECT_EQ(p.entries[2].path, "");

  Parsed bad = Parse(File("a/../../etc/passwd", "") + End());
  EXPECT_EQ(bad.status.code(), Code::kCorrupt);
  Hdr hard;
  hard.name = "h";
  hard.type = '1';
  hard.linkname = "../outside";
  EXPECT_EQ(Parse(Header(hard) + End()).status.code(), Code::kCorrupt);
}

TEST(TarReaderTest, StopsAtEndBlocksAndToleratesTheirAbsence) {
  std::string tar = File("a", "1") + End() + "trailing garbage after the end";
  Parsed p = Parse(tar);
  EXPECT_TRUE(p.status.ok()) << p.status.ToString();
  EXPECT_EQ(p.entries.size(), 1u);

  Parsed no_end = Parse(File("a", "1") + File("b", "2"));
  EXPECT_TRUE(no_end.status.ok()) << no_end.status.ToString();
  EXPECT_EQ(no_end.entries.size(), 2u);
}

TEST(TarReaderTest, MalformedInputIsCorruptWithOffset) {
  std::string good = File("a", "hello") + File("b", "world") + End();

  std::string bad_sum = good;
  bad_sum[512 * 2 + 10] ^= 1;  // inside the name of the second header
  Parsed p = Parse(bad_sum);
  EXPECT_EQ(p.status.code(), Code::kCorrupt);
  EXPECT_THAT(p.status.message(), ::testing::HasSubstr("offset 1024"));
  EXPECT_THAT(p.status.message(), ::testing::HasSubstr("checksum"));

  std::string bad_octal = good;
  bad_octal[101] = '9';
  {
    std::string h = bad_octal.substr(0, 512);
    SetChecksum(h);
    bad_octal.replace(0, 512, h);
  }
  EXPECT_EQ(Parse(bad_octal).status.code(), Code::kCorrupt);

  // Truncated in the middle of file data.
  EXPECT_EQ(Parse(good.substr(0, 700)).status.code(), Code::kCorrupt);
  // Truncated in the middle of a header.
  EXPECT_EQ(Parse(good.substr(0, 1024 + 100)).status.code(), Code::kCorrupt);

  // A PAX record whose length runs past the header's data.
  std::string lying = "99 path=x\n";
  Hdr ph;
  ph.name = "pax";
  ph.type = 'x';
  ph.size = lying.size();
  EXPECT_EQ(Parse(Header(ph) + Padded(lying) + File("f", "") + End()).status.code(),
            Code::kCorrupt);
  // A PAX record whose length is too short to hold "key=value\n".
  std::string short_len = "3 path=abcdef\n";
  ph.size = short_len.size();
  EXPECT_EQ(Parse(Header(ph) + Padded(short_len) + File("f", "") + End()).status.code(),
            Code::kCorrupt);
  // Size field overflowing into base-256 nonsense.
  std::string huge = File("h", "");
  huge[124] = static_cast<char>(0xff);
  for (int i = 125; i < 136; ++i) huge[i] = static_cast<char>(0xff);
  {
    std::string h = huge.substr(0, 512);
    SetChecksum(h);
    huge.replace(0, 512, h);
  }
  EXPECT_EQ(Parse(huge + End()).status.code(), Code::kCorrupt);
}

TEST(TarReaderTest, RandomDamageNeverCrashes) {
  std::string good = PaxHeader({{"path", std::string(200, 'q')}, {"SCHILY.xattr.user.x", "v"}}) +
                     File("a", std::string(3000, 'a')) + File("b", "bb") + End();
  std::mt19937 rng(42);
  for (int round = 0; round < 3000; ++round) {
    std::string damaged = good;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) {
      damaged[rng() % damaged.size()] = static_cast<char>(rng());
    }
    if (rng() % 2) {
      // Keep the checksums right so that damage reaches the field parsers.
      for (size_t off = 0; off + 512 <= damaged.size(); off += 512) {
        std::string h = damaged.substr(off, 512);
        if (h.compare(257, 5, "ustar") == 0) {
          SetChecksum(h);
          damaged.replace(off, 512, h);
        }
      }
    }
    Parsed p = Parse(damaged, 1 + rng() % 1000);
    if (!p.status.ok()) {
      EXPECT_TRUE(p.status.code() == Code::kCorrupt || p.status.code() == Code::kUnsupported)
          << p.status.ToString();
    }
  }
}

// The real tool, in the formats images are made with.
TEST(TarReaderTest, ReadsWhatGnuTarWrites) {
  namespace stdfs = std::filesystem;
  stdfs::path dir = stdfs::temp_directory_path() / ("imgfs-tar-test-" + std::to_string(getpid()));
  stdfs::remove_all(dir);
  stdfs::path root = dir / "root";
  std::string long_dir = std::string(120, 'd');
  stdfs::create_directories(root / long_dir);
  std::ofstream(root / long_dir / (std::string(110, 'f'))) << "long named file\n";
  std::ofstream(root / "plain") << "plain\n";
  stdfs::create_symlink(std::string(150, 's'), root / "dangling");
  stdfs::create_hard_link(root / "plain", root / "plain-link");
  for (const char* format : {"pax", "gnu"}) {
    std::string tar_path = (dir / (std::string(format) + ".tar")).string();
    std::string cmd = "tar --format=" + std::string(format) + " --sort=name -C " + root.string() +
                      " -cf " + tar_path + " .";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "GNU tar is needed (scripts/setup): " << cmd;
    std::ifstream in(tar_path, std::ios::binary);
    std::string tar((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Parsed p = Parse(tar, 1000);
    ASSERT_TRUE(p.status.ok()) << format << ": " << p.status.ToString();
    std::map<std::string, Entry> by_path;
    for (const Entry& e : p.entries) by_path[e.path] = e;
    ASSERT_TRUE(by_path.count("")) << format;
    EXPECT_EQ(by_path[""].type, EntryType::kDirectory);
    std::string long_file = long_dir + "/" + std::string(110, 'f');
    ASSERT_TRUE(by_path.count(long_file)) << format;
    EXPECT_EQ(by_path[long_file].size, 16u);
    EXPECT_EQ(by_path["dangling"].type, EntryType::kSymlink);
    EXPECT_EQ(by_path["dangling"].link_target, std::string(150, 's'));
    // One of the two names is stored as a hard link to the other.
    bool linked = by_path["plain-link"].type == EntryType::kHardlink
                      ? by_path["plain-link"].link_target == "plain"
                      : by_path["plain"].link_target == "plain-link";
    EXPECT_TRUE(linked) << format;
  }
  stdfs::remove_all(dir);
}

// --- limits on outside data (docs/architecture.md) ---------------------------------------------

// A path of exactly `length` bytes made of 100-byte components.
std::string PathOfLength(size_t length) {
  std::string path;
  while (path.size() + 101 < length) path += std::string(100, 'd') + "/";
  path += std::string(length - path.size(), 'f');
  return path;
}

TEST(TarLimitsTest, OverlongNamesAreRefusedNamingTheEntry) {
  std::string c255(255, 'n'), c256(256, 'n');
  std::string longest = PathOfLength(4095);
  Parsed at_limit = Parse(PaxHeader({{"path", "dir/" + c255}}) + File("x", "") +
                          PaxHeader({{"path", longest}}) + File("y", "") + End());
  ASSERT_TRUE(at_limit.status.ok()) << at_limit.status.ToString();
  EXPECT_EQ(at_limit.entries[0].path, "dir/" + c255);
  EXPECT_EQ(at_limit.entries[1].path, longest);

  Hdr sym;
  sym.name = "sym";
  sym.type = '2';
  Hdr hard;
  hard.name = "hard";
  hard.type = '1';
  struct Case {
    const char* what;
    std::string tar;
    const char* expect;
  };
  std::vector<Case> cases = {
      {"PAX path component", PaxHeader({{"path", "dir/" + c256}}) + File("x", "") + End(),
       "NAME_MAX"},
      {"PAX path length", PaxHeader({{"path", PathOfLength(4096)}}) + File("x", "") + End(),
       "PATH_MAX"},
      {"GNU long name", GnuLong('L', c256) + File("x", "") + End(), "NAME_MAX"},
      {"symlink target", PaxHeader({{"linkpath", PathOfLength(4096)}}) + Header(sym) + End(),
       "PATH_MAX"},
      {"hard link target", PaxHeader({{"linkpath", "a/" + c256}}) + Header(hard) + End(),
       "NAME_MAX"},
      // The case: a 1 MiB PAX path once mounted and hid its directory's other files.
      {"1 MiB PAX path", PaxHeader({{"path", std::string(1 << 20, 'p')}}) + File("x", "") + End(),
       "larger than the limit"},
  };
  for (const Case& c : cases) {
    Parsed p = Parse(c.tar, 4096);
    EXPECT_EQ(p.status.code(), Code::kCorrupt) << c.what << ": " << p.status.ToString();
    EXPECT_THAT(p.status.message(), ::testing::HasSubstr(c.expect)) << c.what;
    EXPECT_LT(p.status.message().size(), 400u) << c.what << ": the name must be abbreviated";
  }
}

std::string WithXattrs(size_t count, size_t value_size) {
  std::vector<std::pair<std::string, std::string>> records;
  for (size_t i = 0; i < count; ++i) {
    records.emplace_back("SCHILY.xattr.user." + std::to_string(i), std::string(value_size, 'v'));
  }
  return PaxHeader(records) + File("f", "") + End();
}

TEST(TarLimitsTest, XattrsAreCappedPerEntry) {
  Parsed at_limit = Parse(WithXattrs(1024, 10));
  ASSERT_TRUE(at_limit.status.ok()) << at_limit.status.ToString();
  EXPECT_EQ(at_limit.entries[0].xattrs.size(), 1024u);

  Parsed too_many = Parse(WithXattrs(1025, 1));
  EXPECT_EQ(too_many.status.code(), Code::kCorrupt);
  EXPECT_THAT(too_many.status.message(), ::testing::HasSubstr("1024"));
  EXPECT_THAT(too_many.status.message(), ::testing::HasSubstr("'f'"));

  Parsed big_value = Parse(WithXattrs(1, 65537));
  EXPECT_EQ(big_value.status.code(), Code::kCorrupt);
  EXPECT_THAT(big_value.status.message(), ::testing::HasSubstr("65536"));

  // As many records as a 1 MiB header holds: refused (the listxattr of such a file once cost
  // a minute of CPU). The time bound only catches a quadratic parse; it is loose on purpose.
  auto start = std::chrono::steady_clock::now();
  Parsed flood = Parse(WithXattrs(40000, 1));
  EXPECT_EQ(flood.status.code(), Code::kCorrupt);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
}

// --- Go's archive/tar reading (docker, containerd) -----------------------------------------

TEST(TarGoReadingTest, OnlyTheLastPaxHeaderBeforeAMemberApplies) {
  std::string tar = PaxHeader({{"path", "first"}, {"uid", "5"}, {"SCHILY.xattr.user.a", "1"}}) +
                    PaxHeader({{"mtime", "7"}}) + File("f", "x") + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries.size(), 1u);
  EXPECT_EQ(p.entries[0].path, "f");
  EXPECT_EQ(p.entries[0].uid, 1000u);
  EXPECT_EQ(p.entries[0].mtime_sec, 7);
  EXPECT_TRUE(p.entries[0].xattrs.empty());
}

TEST(TarGoReadingTest, PaxNumbersMayHaveLeadingZerosAndASign) {
  std::string data(700, 'z');
  Hdr h;
  h.name = "big";
  for (const char* size : {"0000000000000000000000000700", "+700"}) {
    std::string tar = PaxHeader({{"size", size}, {"uid", "007"}, {"mtime", "+0012.5"}}) +
                      Header(h) + Padded(data) + File("next", "n") + End();
    Parsed p = Parse(tar);
    ASSERT_TRUE(p.status.ok()) << size << ": " << p.status.ToString();
    ASSERT_EQ(p.entries.size(), 2u);
    EXPECT_EQ(p.entries[0].size, 700u);
    EXPECT_EQ(p.entries[0].uid, 7u);
    EXPECT_EQ(p.entries[0].mtime_sec, 12);
    EXPECT_EQ(p.entries[0].mtime_nsec, 500000000u);
    EXPECT_EQ(p.entries[1].path, "next");
  }
  EXPECT_EQ(Parse(PaxHeader({{"size", "-1"}}) + Header(h) + End()).status.code(), Code::kCorrupt);
}

TEST(TarGoReadingTest, GnuLongNameAndLinkWinOverPax) {
  Hdr sym;
  sym.name = "short";
  sym.type = '2';
  std::string tar = PaxHeader({{"path", "pax-name"}, {"linkpath", "pax-target"}}) +
                    GnuLong('L', "gnu-name") + GnuLong('K', "gnu-target") + Header(sym) + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  EXPECT_EQ(p.entries[0].path, "gnu-name");
  EXPECT_EQ(p.entries[0].link_target, "gnu-target");
}

TEST(TarGoReadingTest, NamesAreCleanedWithinTheRootAndEscapesNamed) {
  Hdr hard;
  hard.name = "h";
  hard.type = '1';
  hard.linkname = "/../a";
  Parsed p = Parse(File("/../../etc/passwd", "") + File("/abs/../x", "") + File("./a/../b", "") +
                   File("a", "") + Header(hard) + End());
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  EXPECT_EQ(p.entries[0].path, "etc/passwd");
  EXPECT_EQ(p.entries[1].path, "x");
  EXPECT_EQ(p.entries[2].path, "b");
  EXPECT_EQ(p.entries[4].link_target, "a");

  for (const char* name : {"../escape", "a/../../escape", ".."}) {
    Parsed bad = Parse(File(name, "") + End());
    EXPECT_EQ(bad.status.code(), Code::kCorrupt) << name;
    EXPECT_THAT(bad.status.message(), ::testing::HasSubstr(std::string("'") + name + "'"));
    EXPECT_THAT(bad.status.message(), ::testing::HasSubstr("outside"));
  }
  hard.linkname = "../t";
  EXPECT_EQ(Parse(Header(hard) + End()).status.code(), Code::kCorrupt);
}

TEST(TarGoReadingTest, DegenerateWhiteoutsAndAufsMetadataAreDropped) {
  Hdr plnk;
  plnk.name = ".wh..wh.plnk/";
  plnk.type = '5';
  std::string tar = File(".wh.", "") + File("a/.wh..", "") + File("a/.wh...", "") + Header(plnk) +
                    File(".wh..wh.plnk/123", "x") + File("a/.wh.real", "") +
                    File(".wh..wh..opq", "") + File("keep", "k") + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries.size(), 3u);
  EXPECT_EQ(p.entries[0].path, "a/real");
  EXPECT_TRUE(p.entries[0].whiteout);
  EXPECT_EQ(p.entries[1].path, "");
  EXPECT_TRUE(p.entries[1].opaque);
  EXPECT_EQ(p.entries[2].path, "keep");
}

// --- GNU sparse members --------------------------------------------------------------------

// The file's bytes as the entry's chunks give them from the archive.
std::string Expand(const std::string& tar, const Entry& e, uint64_t data_offset) {
  std::string out;
  if (e.chunks.empty()) return tar.substr(data_offset, e.size);
  for (const Chunk& c : e.chunks) {
    EXPECT_EQ(c.file_offset, out.size());
    if (c.unit == Chunk::kZeroUnit) {
      out.append(c.length, '\0');
    } else {
      out.append(tar, data_offset + c.unit_offset, c.length);
    }
  }
  return out;
}

TEST(TarSparseTest, ReadsEverySparseFormatGnuTarWrites) {
  namespace stdfs = std::filesystem;
  stdfs::path dir = stdfs::temp_directory_path() / ("imgfs-sparse-" + std::to_string(getpid()));
  stdfs::remove_all(dir);
  stdfs::create_directories(dir / "root");
  // Holes between 40 data regions (more than the 4 + 21 of one old GNU header and extension
  // block), a hole at the end, and a file that is one hole.
  std::string content(6 << 20, '\0');
  {
    int fd = open((dir / "root" / "sparse").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    std::mt19937 rng(3);
    for (int i = 0; i < 40; ++i) {
      size_t off = static_cast<size_t>(i) * 131072 + (i % 3) * 777;
      std::string data(5000 + i, '\0');
      for (char& c : data) c = static_cast<char>(rng());
      ASSERT_EQ(pwrite(fd, data.data(), data.size(), static_cast<off_t>(off)),
                static_cast<ssize_t>(data.size()));
      content.replace(off, data.size(), data);
    }
    ASSERT_EQ(ftruncate(fd, static_cast<off_t>(content.size())), 0);
    close(fd);
    int hole = open((dir / "root" / "hole").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    ASSERT_GE(hole, 0);
    ASSERT_EQ(ftruncate(hole, 1 << 20), 0);
    close(hole);
  }
  for (const char* format :
       {"--format=gnu", "--format=pax --sparse-version=0.0", "--format=pax --sparse-version=0.1",
        "--format=pax --sparse-version=1.0"}) {
    std::string tar_path = (dir / "out.tar").string();
    std::string cmd = std::string("tar --sparse ") + format + " -C " + (dir / "root").string() +
                      " -cf " + tar_path + " sparse hole";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "GNU tar is needed (scripts/setup): " << cmd;
    std::ifstream in(tar_path, std::ios::binary);
    std::string tar((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Parsed p = Parse(tar, 700);
    ASSERT_TRUE(p.status.ok()) << format << ": " << p.status.ToString();
    ASSERT_EQ(p.entries.size(), 2u) << format;
    EXPECT_EQ(p.entries[0].path, "sparse") << format;
    EXPECT_EQ(p.entries[0].size, content.size()) << format;
    size_t holes = 0;
    for (const Chunk& c : p.entries[0].chunks) holes += c.unit == Chunk::kZeroUnit;
    EXPECT_GE(holes, 40u) << format;
    EXPECT_TRUE(Expand(tar, p.entries[0], p.data_offsets[0]) == content) << format;
    EXPECT_EQ(p.entries[1].path, "hole") << format;
    EXPECT_EQ(Expand(tar, p.entries[1], p.data_offsets[1]), std::string(1 << 20, '\0')) << format;
  }
  stdfs::remove_all(dir);
}

TEST(TarSparseTest, LyingSparseMapsAreCorrupt) {
  auto sparse01 = [](const std::string& map, const std::string& numblocks, uint64_t stored) {
    Hdr h;
    h.name = "s";
    h.size = stored;
    return PaxHeader({{"GNU.sparse.major", "0"},
                      {"GNU.sparse.minor", "1"},
                      {"GNU.sparse.size", "100"},
                      {"GNU.sparse.numblocks", numblocks},
                      {"GNU.sparse.map", map}}) +
           Header(h) + Padded(std::string(stored, 'd')) + End();
  };
  Parsed good = Parse(sparse01("10,5,50,5", "2", 10));
  ASSERT_TRUE(good.status.ok()) << good.status.ToString();
  EXPECT_EQ(good.entries[0].size, 100u);
  EXPECT_EQ(good.entries[0].chunks.size(), 5u);  // hole, data, hole, data, hole
  for (auto [map, n, stored] : std::vector<std::tuple<std::string, std::string, uint64_t>>{
           {"10,5,12,5", "2", 10},  // overlapping
           {"50,5,10,5", "2", 10},  // out of order
           {"90,20", "1", 20},      // past the size
           {"10,5,50,5", "2", 12},  // stored data longer than the map says
           {"10,5,50,5", "3", 10},  // count lies
           {"10,x", "1", 0}}) {     // not a number
    EXPECT_EQ(Parse(sparse01(map, n, stored)).status.code(), Code::kCorrupt) << map;
  }
  // A 1.0 map that claims more regions than the limit is refused before it is read.
  Hdr h;
  h.name = "s";
  h.size = 512;
  std::string map10 = PaxHeader({{"GNU.sparse.major", "1"},
                                 {"GNU.sparse.minor", "0"},
                                 {"GNU.sparse.realsize", "10"}}) +
                      Header(h) + Padded("99999999\n") + End();
  Parsed p = Parse(map10);
  EXPECT_EQ(p.status.code(), Code::kCorrupt);
  EXPECT_THAT(p.status.message(), ::testing::HasSubstr("65536"));
}

}  // namespace
}  // namespace imgfs::fs
