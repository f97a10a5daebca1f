// One layer's diff in overlay's on-disk format (fs/tree/overlay_diff.h), on hand-built
// LayerIndex values, read back through a Tree as the store serves it.
#include "fs/tree/overlay_diff.h"

#include <sys/stat.h>

#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fs/tree/tree.h"

namespace imgfs::fs {
namespace {

Entry Make(std::string path, EntryType type, uint32_t mode) {
  Entry e;
  e.path = std::move(path);
  e.type = type;
  e.mode = mode;
  return e;
}

std::unique_ptr<Tree> DiffTree(const LayerIndex& layer) {
  auto diff = std::make_shared<const LayerIndex>(OverlayDiffIndex(layer));
  auto tree = Tree::Build({diff});
  EXPECT_TRUE(tree.ok()) << tree.status().ToString();
  return tree.ok() ? std::move(*tree) : nullptr;
}

TEST(OverlayDiffTest, WhiteoutsAreZeroZeroCharacterDevicesAndOpaqueDirsCarryTheXattr) {
  LayerIndex layer;
  layer.blob_digest = "sha256:" + std::string(64, 'a');
  Entry whiteout = Make("data/gone", EntryType::kRegular, 0);
  whiteout.whiteout = true;
  whiteout.uid = 7;
  Entry opaque = Make("etc/replaced", EntryType::kRegular, 0);
  opaque.opaque = true;
  Entry implicit_opaque = Make("var/empty", EntryType::kRegular, 0);
  implicit_opaque.opaque = true;
  layer.entries = {Make("etc", EntryType::kDirectory, 0755), opaque,
                   Make("etc/replaced", EntryType::kDirectory, 0750), whiteout, implicit_opaque};
  std::unique_ptr<Tree> tree = DiffTree(layer);
  ASSERT_NE(tree, nullptr);

  auto gone = tree->InodeOfPath("data/gone");
  ASSERT_TRUE(gone.ok());
  auto attr = tree->GetAttr(*gone);
  ASSERT_TRUE(attr.ok());
  EXPECT_TRUE(S_ISCHR(attr->mode));
  EXPECT_EQ(attr->mode & 07777, 0u);
  EXPECT_EQ(attr->rdev, 0u);
  EXPECT_EQ(attr->uid, 7u);

  auto replaced = tree->InodeOfPath("etc/replaced");
  ASSERT_TRUE(replaced.ok());
  EXPECT_EQ(tree->GetAttr(*replaced)->mode & 07777, 0750u);  // its own entry's attributes
  EXPECT_EQ(*tree->GetXattr(*replaced, kOverlayOpaqueXattr), "y");
  auto empty = tree->InodeOfPath("var/empty");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(S_ISDIR(tree->GetAttr(*empty)->mode));
  EXPECT_EQ(*tree->GetXattr(*empty, kOverlayOpaqueXattr), "y");
  // Without a root entry the root is containers/storage's 0555.
  EXPECT_EQ(tree->GetAttr(Tree::kRootIno)->mode & 07777, 0555u);
}

TEST(OverlayDiffTest, AHardLinkHeaderGivesTheSharedInodeItsAttributes) {
  LayerIndex layer;
  layer.blob_digest = "sha256:" + std::string(64, 'b');
  Entry root = Make("", EntryType::kDirectory, 0711);
  Entry a = Make("a", EntryType::kRegular, 0640);
  Entry b = Make("b", EntryType::kHardlink, 0644);
  b.link_target = "a";
  b.uid = 5;
  layer.entries = {root, a, b};
  std::unique_ptr<Tree> tree = DiffTree(layer);
  ASSERT_NE(tree, nullptr);
  auto ia = tree->InodeOfPath("a");
  auto ib = tree->InodeOfPath("b");
  ASSERT_TRUE(ia.ok() && ib.ok());
  EXPECT_EQ(*ia, *ib);
  EXPECT_EQ(tree->GetAttr(*ia)->mode & 07777, 0644u);
  EXPECT_EQ(tree->GetAttr(*ia)->uid, 5u);
  EXPECT_EQ(tree->GetAttr(Tree::kRootIno)->mode & 07777, 0711u);
}

TEST(OverlayDiffTest, AHardLinkIntoALowerLayerIsRefusedAsExtractionWouldFail) {
  LayerIndex layer;
  layer.blob_digest = "sha256:" + std::string(64, 'c');
  Entry link = Make("b", EntryType::kHardlink, 0644);
  link.link_target = "lower-file";
  layer.entries = {link};
  auto diff = std::make_shared<const LayerIndex>(OverlayDiffIndex(layer));
  auto tree = Tree::Build({diff});
  EXPECT_EQ(tree.status().code(), Code::kCorrupt);
}

}  // namespace
}  // namespace imgfs::fs
