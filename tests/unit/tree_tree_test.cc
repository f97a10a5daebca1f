// The merged overlay: OCI whiteouts, opaque directories, replacement, implicit parents, hard
// links, attributes and directory listing, on hand-built LayerIndex values.
#include "fs/tree/tree.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/sanitizer.h"

namespace imgfs::fs {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

Entry Dir(std::string path, uint32_t mode = 0755) {
  Entry e;
  e.path = std::move(path);
  e.type = EntryType::kDirectory;
  e.mode = mode;
  return e;
}

Entry File(std::string path, uint64_t size = 0, uint32_t mode = 0644) {
  Entry e;
  e.path = std::move(path);
  e.type = EntryType::kRegular;
  e.mode = mode;
  e.size = size;
  return e;
}

Entry Whiteout(std::string path) {
  Entry e;
  e.path = std::move(path);
  e.whiteout = true;
  return e;
}

Entry Opaque(std::string dir) {
  Entry e;
  e.path = std::move(dir);
  e.type = EntryType::kDirectory;
  e.opaque = true;
  return e;
}

Entry Hardlink(std::string path, std::string target) {
  Entry e;
  e.path = std::move(path);
  e.type = EntryType::kHardlink;
  e.link_target = std::move(target);
  return e;
}

std::shared_ptr<const LayerIndex> Layer(std::vector<Entry> entries) {
  auto layer = std::make_shared<LayerIndex>();
  static int n = 0;
  layer->blob_digest = "sha256:" + std::string(63, '0') + std::to_string(n++ % 10);
  layer->format = "tar";
  layer->entries = std::move(entries);
  return layer;
}

std::unique_ptr<Tree> BuildOrDie(std::vector<std::shared_ptr<const LayerIndex>> layers) {
  Result<std::unique_ptr<Tree>> tree = Tree::Build(std::move(layers));
  EXPECT_TRUE(tree.ok()) << tree.status().ToString();
  return tree.ok() ? std::move(tree).value() : nullptr;
}

bool Exists(const Tree& tree, std::string_view path) { return tree.InodeOfPath(path).ok(); }

Tree::Attr AttrOf(const Tree& tree, std::string_view path) {
  Result<uint64_t> ino = tree.InodeOfPath(path);
  EXPECT_TRUE(ino.ok()) << path << ": " << ino.status().ToString();
  if (!ino.ok()) return {};
  return tree.GetAttr(*ino).value();
}

// Names in a directory, "." and ".." left out.
std::vector<std::string> List(const Tree& tree, std::string_view dir) {
  std::vector<std::string> names;
  Result<uint64_t> ino = tree.InodeOfPath(dir);
  EXPECT_TRUE(ino.ok()) << dir;
  if (!ino.ok()) return names;
  Status s = tree.ReadDir(*ino, 0, [&](std::string_view name, const Tree::Attr&, uint64_t) {
    if (name != "." && name != "..") names.emplace_back(name);
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return names;
}

TEST(TreeTest, RootIsInodeOneAndEmptyImageIsAnEmptyDirectory) {
  auto tree = BuildOrDie({});
  Tree::Attr root = tree->GetAttr(Tree::kRootIno).value();
  EXPECT_EQ(root.ino, 1u);
  EXPECT_EQ(root.mode, S_IFDIR | 0755u);
  EXPECT_EQ(root.nlink, 2u);
  EXPECT_THAT(List(*tree, ""), IsEmpty());
  EXPECT_EQ(tree->inode_count(), 1u);
}

TEST(TreeTest, RootEntryGivesRootItsAttributes) {
  Entry root = Dir("", 0700);
  root.uid = 5;
  root.mtime_sec = 1234;
  auto tree = BuildOrDie({Layer({root, File("a")})});
  Tree::Attr a = tree->GetAttr(Tree::kRootIno).value();
  EXPECT_EQ(a.mode, S_IFDIR | 0700u);
  EXPECT_EQ(a.uid, 5u);
  EXPECT_EQ(a.mtime_sec, 1234);
}

TEST(TreeTest, ImplicitParentsAreCreatedAndTakeALaterExplicitEntry) {
  Entry explicit_dir = Dir("a", 0711);
  explicit_dir.uid = 7;
  explicit_dir.mtime_sec = 99;
  auto tree = BuildOrDie({Layer({File("a/b/c.txt", 3), explicit_dir})});
  Tree::Attr b = AttrOf(*tree, "a/b");
  EXPECT_EQ(b.mode, S_IFDIR | 0755u);
  EXPECT_EQ(b.uid, 0u);
  EXPECT_EQ(b.mtime_sec, 0);
  Tree::Attr a = AttrOf(*tree, "a");
  EXPECT_EQ(a.mode, S_IFDIR | 0711u);
  EXPECT_EQ(a.uid, 7u);
  EXPECT_EQ(a.mtime_sec, 99);
  EXPECT_THAT(List(*tree, "a/b"), ElementsAre("c.txt"));  // the directory kept its contents
  EXPECT_EQ(AttrOf(*tree, "a/b/c.txt").size, 3u);
}

TEST(TreeTest, UpperLayerEntryReplacesLowerAndLaterEntryInLayerWins) {
  auto tree = BuildOrDie(
      {Layer({File("f", 1), File("g", 1), File("g", 2)}), Layer({File("f", 10, 0600)})});
  EXPECT_EQ(AttrOf(*tree, "f").size, 10u);
  EXPECT_EQ(AttrOf(*tree, "f").mode, S_IFREG | 0600u);
  EXPECT_EQ(AttrOf(*tree, "g").size, 2u);
  FileSource src = tree->GetFileSource(AttrOf(*tree, "f").ino).value();
  EXPECT_EQ(src.layer, 1u);
  EXPECT_EQ(src.entry, 0u);
  EXPECT_EQ(src.size, 10u);
}

TEST(TreeTest, WhiteoutDeletesFileAndDirectorySubtreeOfLowerLayers) {
  auto tree = BuildOrDie({Layer({Dir("etc"), File("etc/passwd"), File("etc/group"), Dir("var"),
                                 Dir("var/lib"), File("var/lib/x")}),
                          Layer({Whiteout("etc/passwd"), Whiteout("var/lib")})});
  EXPECT_FALSE(Exists(*tree, "etc/passwd"));
  EXPECT_TRUE(Exists(*tree, "etc/group"));
  EXPECT_FALSE(Exists(*tree, "var/lib"));
  EXPECT_FALSE(Exists(*tree, "var/lib/x"));
  EXPECT_THAT(List(*tree, "var"), IsEmpty());
  EXPECT_EQ(AttrOf(*tree, "var").nlink, 2u);
}

TEST(TreeTest, WhiteoutNeverDeletesEntriesOfItsOwnLayer) {
  // Archive order must not matter: the whiteout comes after the same-layer file here.
  auto tree = BuildOrDie({Layer({File("a", 1), File("b", 1)}),
                          Layer({File("a", 5), Whiteout("a"), Whiteout("b"), File("b", 7)})});
  EXPECT_EQ(AttrOf(*tree, "a").size, 5u);
  EXPECT_EQ(AttrOf(*tree, "b").size, 7u);
}

TEST(TreeTest, WhiteoutOfMissingPathIsHarmless) {
  auto tree = BuildOrDie({Layer({File("a")}), Layer({Whiteout("nope/x"), Whiteout("b")})});
  EXPECT_TRUE(Exists(*tree, "a"));
  EXPECT_FALSE(Exists(*tree, "nope"));
}

TEST(TreeTest, WhiteoutThenRecreateInSameLayerGivesFreshDirectory) {
  auto tree = BuildOrDie(
      {Layer({Dir("d"), File("d/old")}), Layer({Whiteout("d"), Dir("d"), File("d/new")})});
  EXPECT_THAT(List(*tree, "d"), ElementsAre("new"));
}

TEST(TreeTest, OpaqueDirectoryHidesLowerContentsButKeepsItsOwnLayers) {
  auto tree = BuildOrDie(
      {Layer({Dir("d"), File("d/lower1"), Dir("d/sub"), File("d/sub/x"), File("other")}),
       // The marker after the layer's own entries: they still stay.
       Layer({Dir("d"), File("d/mine"), Opaque("d")})});
  EXPECT_THAT(List(*tree, "d"), ElementsAre("mine"));
  EXPECT_TRUE(Exists(*tree, "other"));
}

TEST(TreeTest, OpaqueMarkerAloneMakesItsDirectory) {
  auto tree = BuildOrDie({Layer({Opaque("new/dir")})});
  EXPECT_TRUE(S_ISDIR(AttrOf(*tree, "new/dir").mode));
  EXPECT_THAT(List(*tree, "new/dir"), IsEmpty());
}

TEST(TreeTest, OpaqueAffectsOnlyLayersBelow) {
  auto tree = BuildOrDie(
      {Layer({File("d/a")}), Layer({Opaque("d"), File("d/b")}), Layer({File("d/c")})});
  EXPECT_THAT(List(*tree, "d"), ElementsAre("b", "c"));
}

TEST(TreeTest, FileReplacesDirectoryAndItsSubtree) {
  auto tree = BuildOrDie(
      {Layer({Dir("x"), File("x/inner"), Dir("x/deep")}), Layer({File("x", 4)})});
  Tree::Attr x = AttrOf(*tree, "x");
  EXPECT_TRUE(S_ISREG(x.mode));
  EXPECT_EQ(x.size, 4u);
  EXPECT_FALSE(Exists(*tree, "x/inner"));
  EXPECT_EQ(tree->GetAttr(Tree::kRootIno)->nlink, 2u);
}

TEST(TreeTest, DirectoryReplacesFile) {
  auto tree = BuildOrDie({Layer({File("x", 4)}), Layer({Dir("x", 0700), File("x/y")})});
  Tree::Attr x = AttrOf(*tree, "x");
  EXPECT_EQ(x.mode, S_IFDIR | 0700u);
  EXPECT_THAT(List(*tree, "x"), ElementsAre("y"));
}

TEST(TreeTest, ImplicitParentReplacesLowerFile) {
  auto tree = BuildOrDie({Layer({File("x")}), Layer({File("x/y")})});
  EXPECT_TRUE(S_ISDIR(AttrOf(*tree, "x").mode));
  EXPECT_TRUE(Exists(*tree, "x/y"));
}

TEST(TreeTest, DirectoryLinkCountIsTwoPlusSubdirectories) {
  auto tree = BuildOrDie({Layer({Dir("a"), Dir("a/b"), Dir("a/c"), File("a/f")})});
  EXPECT_EQ(AttrOf(*tree, "a").nlink, 4u);
  EXPECT_EQ(tree->GetAttr(Tree::kRootIno)->nlink, 3u);
}

TEST(TreeTest, HardLinksShareInodeAndCountNamesAcrossLayers) {
  auto tree = BuildOrDie(
      {Layer({File("bin/busybox", 100, 0755), Hardlink("bin/sh", "bin/busybox")}),
       Layer({Hardlink("usr/bin/env", "bin/sh")})});
  Tree::Attr a = AttrOf(*tree, "bin/busybox");
  Tree::Attr b = AttrOf(*tree, "bin/sh");
  Tree::Attr c = AttrOf(*tree, "usr/bin/env");
  EXPECT_EQ(a.ino, b.ino);
  EXPECT_EQ(a.ino, c.ino);
  EXPECT_EQ(a.nlink, 3u);
  EXPECT_EQ(c.size, 100u);
  EXPECT_EQ(c.mode, S_IFREG | 0755u);
  FileSource src = tree->GetFileSource(c.ino).value();
  EXPECT_EQ(src.layer, 0u);
  EXPECT_EQ(src.entry, 0u);
  // Listed once per name, counted once as a file.
  EXPECT_EQ(tree->stats().regular_files, 1u);
  EXPECT_EQ(tree->stats().total_file_bytes, 100u);
}

TEST(TreeTest, HardLinkSurvivesWhiteoutOfItsTarget) {
  auto tree = BuildOrDie({Layer({File("a", 9), Hardlink("b", "a")}), Layer({Whiteout("a")})});
  EXPECT_FALSE(Exists(*tree, "a"));
  Tree::Attr b = AttrOf(*tree, "b");
  EXPECT_EQ(b.nlink, 1u);
  EXPECT_EQ(b.size, 9u);
  EXPECT_TRUE(tree->GetFileSource(b.ino).ok());
}

TEST(TreeTest, HardLinkCountDropsWhenLinkedDirectoryIsDeleted) {
  auto tree = BuildOrDie(
      {Layer({File("keep"), Hardlink("d/link", "keep")}), Layer({Whiteout("d")})});
  EXPECT_EQ(AttrOf(*tree, "keep").nlink, 1u);
}

TEST(TreeTest, HardLinkReplacedByFileLeavesTargetAlone) {
  auto tree = BuildOrDie({Layer({File("a", 1), Hardlink("b", "a")}), Layer({File("b", 2)})});
  EXPECT_EQ(AttrOf(*tree, "a").nlink, 1u);
  EXPECT_NE(AttrOf(*tree, "a").ino, AttrOf(*tree, "b").ino);
  EXPECT_EQ(AttrOf(*tree, "b").size, 2u);
}

TEST(TreeTest, HardLinkToMissingTargetOrDirectoryIsCorrupt) {
  // docker's extraction fails on both (link(2): ENOENT, EPERM); so does the mount.
  Result<std::unique_ptr<Tree>> missing = Tree::Build({Layer({Hardlink("x", "missing")})});
  EXPECT_EQ(missing.status().code(), Code::kCorrupt);
  EXPECT_THAT(missing.status().message(), ::testing::HasSubstr("'x' -> 'missing'"));
  Result<std::unique_ptr<Tree>> dir = Tree::Build({Layer({Dir("d"), Hardlink("y", "d")})});
  EXPECT_EQ(dir.status().code(), Code::kCorrupt);
  EXPECT_THAT(dir.status().message(), ::testing::HasSubstr("a directory"));
}

TEST(TreeTest, SymlinkDeviceFifoAndSpecialModesAreAsInTheEntries) {
  Entry link;
  link.path = "lib/ld.so";
  link.type = EntryType::kSymlink;
  link.mode = 0777;
  link.link_target = "../usr/lib/ld-2.so";
  Entry chr;
  chr.path = "dev/null";
  chr.type = EntryType::kCharDevice;
  chr.mode = 0666;
  chr.dev_major = 1;
  chr.dev_minor = 3;
  Entry blk;
  blk.path = "dev/sda";
  blk.type = EntryType::kBlockDevice;
  blk.mode = 0660;
  blk.gid = 6;
  blk.dev_major = 8;
  blk.dev_minor = 0;
  Entry fifo;
  fifo.path = "run/pipe";
  fifo.type = EntryType::kFifo;
  fifo.mode = 0600;
  Entry suid = File("usr/bin/su", 5, 04755);
  suid.uid = 0;
  suid.gid = 0;
  suid.mtime_sec = 1700000000;
  suid.mtime_nsec = 123456789;
  Entry tmp = Dir("tmp", 01777);
  Entry sgid = Dir("srv", 02775);
  sgid.uid = 1000;
  sgid.gid = 1001;
  auto tree = BuildOrDie({Layer({link, chr, blk, fifo, suid, tmp, sgid})});

  Tree::Attr l = AttrOf(*tree, "lib/ld.so");
  EXPECT_EQ(l.mode, S_IFLNK | 0777u);
  EXPECT_EQ(l.size, link.link_target.size());
  EXPECT_EQ(tree->ReadLink(l.ino).value(), "../usr/lib/ld-2.so");
  EXPECT_FALSE(tree->ReadLink(AttrOf(*tree, "usr/bin/su").ino).ok());

  Tree::Attr c = AttrOf(*tree, "dev/null");
  EXPECT_EQ(c.mode, S_IFCHR | 0666u);
  EXPECT_EQ(c.rdev, makedev(1, 3));
  Tree::Attr b = AttrOf(*tree, "dev/sda");
  EXPECT_EQ(b.mode, S_IFBLK | 0660u);
  EXPECT_EQ(b.rdev, makedev(8, 0));
  EXPECT_EQ(b.gid, 6u);
  EXPECT_EQ(AttrOf(*tree, "run/pipe").mode, S_IFIFO | 0600u);

  Tree::Attr s = AttrOf(*tree, "usr/bin/su");
  EXPECT_EQ(s.mode, S_IFREG | 04755u);
  EXPECT_EQ(s.mtime_sec, 1700000000);
  EXPECT_EQ(s.mtime_nsec, 123456789u);
  EXPECT_EQ(AttrOf(*tree, "tmp").mode, S_IFDIR | 01777u);
  Tree::Attr g = AttrOf(*tree, "srv");
  EXPECT_EQ(g.mode, S_IFDIR | 02775u);
  EXPECT_EQ(g.uid, 1000u);
  EXPECT_EQ(g.gid, 1001u);
  EXPECT_FALSE(tree->GetFileSource(c.ino).ok());
}

TEST(TreeTest, XattrsAreListedAndReadAndAbsentOnesAreNotFound) {
  Entry f = File("f");
  f.xattrs = {{"user.a", "1"}, {"security.capability", std::string("\x01\x00\x00\x02", 4)}};
  auto tree = BuildOrDie({Layer({f, File("plain")})});
  uint64_t ino = AttrOf(*tree, "f").ino;
  EXPECT_THAT(tree->ListXattrs(ino).value(), ElementsAre("user.a", "security.capability"));
  EXPECT_EQ(tree->GetXattr(ino, "user.a").value(), "1");
  EXPECT_EQ(tree->GetXattr(ino, "security.capability").value(), std::string("\x01\x00\x00\x02", 4));
  EXPECT_EQ(tree->GetXattr(ino, "user.none").status().code(), Code::kNotFound);
  EXPECT_THAT(tree->ListXattrs(AttrOf(*tree, "plain").ino).value(), IsEmpty());
  EXPECT_THAT(tree->ListXattrs(AttrOf(*tree, "").ino).value(), IsEmpty());
}

TEST(TreeTest, LookupHandlesDotDotDotAndUnknownNames) {
  auto tree = BuildOrDie({Layer({File("a/b/c")})});
  uint64_t a = AttrOf(*tree, "a").ino;
  uint64_t b = AttrOf(*tree, "a/b").ino;
  EXPECT_EQ(tree->Lookup(b, "..")->ino, a);
  EXPECT_EQ(tree->Lookup(b, ".")->ino, b);
  EXPECT_EQ(tree->Lookup(Tree::kRootIno, "..")->ino, Tree::kRootIno);
  EXPECT_EQ(tree->Lookup(b, "zz").status().code(), Code::kNotFound);
  EXPECT_EQ(tree->GetAttr(999).status().code(), Code::kNotFound);
  EXPECT_EQ(tree->GetAttr(0).status().code(), Code::kNotFound);
  EXPECT_FALSE(tree->Lookup(AttrOf(*tree, "a/b/c").ino, "x").ok());
  EXPECT_EQ(tree->InodeOfPath("a/b/c/d").status().code(), Code::kNotFound);
}

TEST(TreeTest, ReadDirIsSortedWithDotsAndResumesAtAnyOffset) {
  auto tree = BuildOrDie({Layer({File("d/c"), File("d/a"), Dir("d/b"), File("d/e")})});
  uint64_t d = AttrOf(*tree, "d").ino;
  std::vector<std::pair<std::string, uint64_t>> all;
  ASSERT_TRUE(tree->ReadDir(d, 0,
                            [&](std::string_view name, const Tree::Attr&, uint64_t next) {
                              all.emplace_back(std::string(name), next);
                              return true;
                            })
                  .ok());
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[0].first, ".");
  EXPECT_EQ(all[1].first, "..");
  EXPECT_EQ(all[2].first, "a");
  EXPECT_EQ(all[3].first, "b");
  EXPECT_EQ(all[5].first, "e");

  // A caller whose buffer holds two entries at a time sees every entry exactly once.
  std::vector<std::string> resumed;
  uint64_t offset = 0;
  for (int rounds = 0; rounds < 10; ++rounds) {
    int taken = 0;
    uint64_t last_next = offset;
    ASSERT_TRUE(tree->ReadDir(d, offset,
                              [&](std::string_view name, const Tree::Attr&, uint64_t next) {
                                if (taken == 2) return false;
                                ++taken;
                                resumed.emplace_back(name);
                                last_next = next;
                                return true;
                              })
                    .ok());
    if (taken == 0) break;
    offset = last_next;
  }
  std::vector<std::string> names;
  for (const auto& [n, next] : all) names.push_back(n);
  EXPECT_EQ(resumed, names);

  // Attributes come with the entries; ".." is the parent.
  ASSERT_TRUE(tree->ReadDir(d, 1,
                            [&](std::string_view name, const Tree::Attr& attr, uint64_t) {
                              EXPECT_EQ(name, "..");
                              EXPECT_EQ(attr.ino, Tree::kRootIno);
                              return false;
                            })
                  .ok());
  int past_end = 0;
  ASSERT_TRUE(tree->ReadDir(d, 6,
                            [&](std::string_view, const Tree::Attr&, uint64_t) {
                              ++past_end;
                              return true;
                            })
                  .ok());
  EXPECT_EQ(past_end, 0);
  EXPECT_EQ(
      tree->ReadDir(AttrOf(*tree, "d/a").ino, 0, [](auto, auto&, auto) { return true; }).code(),
      Code::kInvalidArgument);
}

TEST(TreeTest, InodesAreDenseAndStable) {
  auto tree = BuildOrDie(
      {Layer({File("a"), File("b"), Dir("c"), File("c/d")}), Layer({Whiteout("b")})});
  EXPECT_EQ(tree->inode_count(), 4u);  // root, a, c, c/d
  for (uint64_t ino = 1; ino <= tree->inode_count(); ++ino) {
    EXPECT_TRUE(tree->GetAttr(ino).ok()) << ino;
  }
  EXPECT_FALSE(tree->GetAttr(tree->inode_count() + 1).ok());
  EXPECT_EQ(AttrOf(*tree, "c/d").ino, AttrOf(*tree, "c/d").ino);
}

TEST(TreeTest, UncleanPathIsCorrupt) {
  Result<std::unique_ptr<Tree>> tree = Tree::Build({Layer({File("a/../../etc/shadow")})});
  EXPECT_EQ(tree.status().code(), Code::kCorrupt);
  tree = Tree::Build({Layer({File("a//b")})});
  EXPECT_EQ(tree.status().code(), Code::kCorrupt);
  tree = Tree::Build({Layer({Whiteout("../x")})});
  EXPECT_EQ(tree.status().code(), Code::kCorrupt);
  tree = Tree::Build({nullptr});
  EXPECT_EQ(tree.status().code(), Code::kInvalidArgument);
}

TEST(TreeTest, HundredThousandEntriesBuildWellUnderASecond) {
  std::vector<Entry> entries;
  entries.reserve(100000);
  for (int d = 0; d < 1000; ++d) {
    std::string dir = "usr/share/d" + std::to_string(d);
    entries.push_back(Dir(dir));
    for (int f = 0; f < 99; ++f) entries.push_back(File(dir + "/file" + std::to_string(f), 10));
  }
  auto layer = Layer(std::move(entries));
  auto start = std::chrono::steady_clock::now();
  auto tree = BuildOrDie({layer, Layer({Whiteout("usr/share/d7")})});
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  EXPECT_LT(ms, 1000 * test::TimeScale());
  EXPECT_EQ(tree->stats().regular_files, 999u * 99u);
  EXPECT_EQ(tree->stats().total_file_bytes, 999u * 99u * 10u);
  EXPECT_EQ(AttrOf(*tree, "usr/share").nlink, 2u + 999u);
}

std::string Chain(size_t depth) {
  std::string path = "a";
  for (size_t i = 1; i < depth; ++i) path += "/a";
  return path;
}

TEST(TreeTest, AMillionLevelChainIsCorruptAndTheDeepestLegalOneIsWhitedOut) {
  // One entry a million directories deep: whiting it out once recursed per level and
  // overflowed the stack. Names are bounded by PATH_MAX, which bounds the depth too.
  Result<std::unique_ptr<Tree>> deep = Tree::Build(
      {Layer({File(Chain(1000000) + "/f")}), Layer({Whiteout("a")})});
  EXPECT_EQ(deep.status().code(), Code::kCorrupt);
  EXPECT_THAT(deep.status().message(), ::testing::HasSubstr("PATH_MAX"));

  std::string deepest = Chain(2047);  // 4093 bytes; "/f" makes it 4095, PATH_MAX with its NUL
  auto tree = BuildOrDie({Layer({File(deepest + "/f", 3)}), Layer({Whiteout("a")})});
  ASSERT_NE(tree, nullptr);
  EXPECT_FALSE(Exists(*tree, "a"));
  auto kept = BuildOrDie({Layer({File(deepest + "/f", 3)})});
  ASSERT_NE(kept, nullptr);
  EXPECT_EQ(AttrOf(*kept, deepest + "/f").size, 3u);
  EXPECT_EQ(kept->inode_count(), 2049u);
}

TEST(TreeTest, SymlinksHaveMode0777WhateverTheArchiveSays) {
  Entry link;
  link.path = "l";
  link.type = EntryType::kSymlink;
  link.mode = 0600;
  link.link_target = "target";
  auto tree = BuildOrDie({Layer({link})});
  ASSERT_NE(tree, nullptr);
  EXPECT_EQ(AttrOf(*tree, "l").mode, static_cast<uint32_t>(S_IFLNK | 0777));
}

TEST(TreeTest, ListingAHundredThousandXattrsIsLinear) {
  // Such an entry can only come from an index built without the parse-time caps; the
  // listing once compared every name with every other (a minute of CPU per listxattr).
  Entry f = File("f");
  for (int i = 0; i < 100000; ++i) f.xattrs.emplace_back("user.x" + std::to_string(i), "v");
  f.xattrs.emplace_back("user.x7", "again");
  auto tree = BuildOrDie({Layer({f})});
  ASSERT_NE(tree, nullptr);
  uint64_t ino = tree->InodeOfPath("f").value();
  // The quadratic listing took 40-60 s here; a linear one takes milliseconds. The bound is
  // loose so that a loaded machine or a sanitizer build cannot make it fail.
  auto start = std::chrono::steady_clock::now();
  Result<std::vector<std::string>> names = tree->ListXattrs(ino);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names->size(), 100000u);
  EXPECT_EQ(tree->GetXattr(ino, "user.x7").value(), "again");
}

}  // namespace
}  // namespace imgfs::fs
