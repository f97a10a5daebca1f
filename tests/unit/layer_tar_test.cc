#include "fs/layer/tar.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <unistd.h>

namespace imgfs::fs {
namespace {

// --- building tars by hand -------------------------------------------------------------------

struct Hdr {
  std::string name;
  char type = '0';
  uint32_t mode = 0644;
  uint64_t uid = 1000, gid = 1000;
  int64_t mtime = 1700000000;
  std::string linkname;
  uint64_t size = 0;
  std::string prefix;
  uint32_t devmajor = 0, devminor = 0;
  enum Format { kUstar, kGnu, kV7 } format = kUstar;
  bool base256_uid = false;
};

void PutOctal(std::string& b, size_t off, size_t width, uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llo", static_cast<int>(width - 1),
                static_cast<unsigned long long>(v));
  std::memcpy(&b[off], buf, width - 1);
  b[off + width - 1] = '\0';
}

void PutStr(std::string& b, size_t off, size_t width, const std::string& s) {
  std::memcpy(&b[off], s.data(), std::min(width, s.size()));
}

void SetChecksum(std::string& b) {
  std::memset(&b[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : b) sum += c;
  char buf[8];
  std::snprintf(buf, sizeof buf, "%06o", sum);
  std::memcpy(&b[148], buf, 7);  // 6 digits, NUL, then the space already there
}

std::string Header(const Hdr& h) {
  std::string b(512, '\0');
  PutStr(b, 0, 100, h.name);
  PutOctal(b, 100, 8, h.mode);
  if (h.base256_uid) {
    b[108] = static_cast<char>(0x80);
    uint64_t v = h.uid;
    for (int i = 7; i >= 1; --i, v >>= 8) b[108 + i] = static_cast<char>(v & 0xff);
  } else {
    PutOctal(b, 108, 8, h.uid);
  }
  PutOctal(b, 116, 8, h.gid);
  PutOctal(b, 124, 12, h.size);
  PutOctal(b, 136, 12, static_cast<uint64_t>(h.mtime));
  b[156] = h.type;
  PutStr(b, 157, 100, h.linkname);
  if (h.format == Hdr::kUstar) {
    std::memcpy(&b[257], "ustar\0" "00", 8);
    PutStr(b, 345, 155, h.prefix);
  } else if (h.format == Hdr::kGnu) {
    std::memcpy(&b[257], "ustar  \0", 8);
  }
  if (h.format != Hdr::kV7) {
    PutStr(b, 265, 32, "user");
    PutStr(b, 297, 32, "group");
    PutOctal(b, 329, 8, h.devmajor);
    PutOctal(b, 337, 8, h.devminor);
  }
  SetChecksum(b);
  return b;
}

std::string Padded(const std::string& data) {
  std::string out = data;
  out.resize((data.size() + 511) / 512 * 512, '\0');
  return out;
}

std::string PaxRecords(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string out;
  for (const auto& [k, v] : kv) {
    size_t body = 1 + k.size() + 1 + v.size() + 1;
    size_t len = body + 1;
    while (std::to_string(len).size() + body != len) ++len;
    out += std::to_string(len) + " " + k + "=" + v + "\n";
  }
  return out;
}

std::string PaxHeader(const std::vector<std::pair<std::string, std::string>>& kv,
                      char type = 'x') {
  std::string data = PaxRecords(kv);
  Hdr h;
  h.name = "PaxHeaders/x";
  h.type = type;
  h.size = data.size();
  return Header(h) + Padded(data);
}

std::string File(const std::string& name, const std::string& data, Hdr h = {}) {
  h.name = name;
  h.type = '0';
  h.size = data.size();
  return Header(h) + Padded(data);
}

std::string End() { return std::string(1024, '\0'); }

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
  std::string tar = File("a", std::string(1000, 'x')) + PaxHeader({{"path", std::string(300, 'p')}}) +
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
  EXPECT_EQ(whole.entries[1].path, std::string(300, 'p'));
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
  std::string tar = PaxHeader({{"size", "700"}}) + Header(h) + Padded(data) + File("next", "n") + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries.size(), 2u);
  EXPECT_EQ(p.entries[0].size, 700u);
  EXPECT_EQ(p.entries[1].path, "next");
}

TEST(TarReaderTest, LibarchiveXattrsAreDecoded) {
  std::string tar = PaxHeader({{"LIBARCHIVE.xattr.user.a%3Db", "aGVsbG8="}}) + File("f", "") + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries[0].xattrs.size(), 1u);
  EXPECT_EQ(p.entries[0].xattrs[0].first, "user.a=b");
  EXPECT_EQ(p.entries[0].xattrs[0].second, "hello");
}

TEST(TarReaderTest, EmptyXattrRecordsAreDropped) {
  // An empty pax value deletes the keyword; docker's and umoci's extraction omit the xattr.
  std::string tar =
      PaxHeader({{"SCHILY.xattr.user.empty", ""}, {"SCHILY.xattr.user.kept", "v"}}) +
      File("f", "") + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries[0].xattrs.size(), 1u);
  EXPECT_EQ(p.entries[0].xattrs[0].first, "user.kept");
}

TEST(TarReaderTest, GlobalPaxAppliesAttributesButNotPaths) {
  std::string tar = PaxHeader({{"mtime", "1234.5"}, {"path", "not-for-everyone"}}, 'g') +
                    File("a", "1") + File("b", "2") + End();
  Parsed p = Parse(tar);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  ASSERT_EQ(p.entries.size(), 2u);
  EXPECT_EQ(p.entries[0].path, "a");
  EXPECT_EQ(p.entries[1].path, "b");
  EXPECT_EQ(p.entries[1].mtime_sec, 1234);
  EXPECT_EQ(p.entries[1].mtime_nsec, 500000000u);
}

TEST(TarReaderTest, GnuLongNameAndLongLink) {
  std::string long_name = std::string(180, 'a') + "/file";
  std::string long_target = std::string(160, 't') + "/target";
  auto gnu_ext = [](char type, const std::string& value) {
    Hdr h;
    h.format = Hdr::kGnu;
    h.name = "././@LongLink";
    h.type = type;
    h.size = value.size() + 1;
    return Header(h) + Padded(value + '\0');
  };
  Hdr link;
  link.format = Hdr::kGnu;
  link.name = "truncated";
  link.type = '1';
  link.linkname = "truncated";
  std::string tar = gnu_ext('L', long_name) + gnu_ext('K', long_target) + Header(link) + End();
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

TEST(TarReaderTest, GnuSparseIsUnsupported) {
  Hdr h;
  h.format = Hdr::kGnu;
  h.name = "sparse";
  h.type = 'S';
  Parsed p = Parse(Header(h) + End());
  EXPECT_EQ(p.status.code(), Code::kUnsupported);
  EXPECT_THAT(p.status.message(), ::testing::HasSubstr("sparse"));
  Parsed pax = Parse(PaxHeader({{"GNU.sparse.major", "1"}}) + File("s", "") + End());
  EXPECT_EQ(pax.status.code(), Code::kUnsupported);
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

}  // namespace
}  // namespace imgfs::fs
