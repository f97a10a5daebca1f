// What a warm mount loads before anything else (cli/layer_indexing.h, LoadCachedLayers): the
// cached index of each layer, read once; nothing for a layer without one, or whose stored
// index is damaged, which then is never served (IndexLayers refuses or rebuilds it).
#include "cli/layer_indexing.h"

#include <gtest/gtest.h>

#include "base/digest.h"
#include "tests/support/temp_cache.h"

namespace imgfs::cli {
namespace {

fs::LayerIndex TocIndex(const std::string& blob) {
  fs::LayerIndex index;
  index.blob_digest = Sha256Digest(blob);
  index.format = "estargz";
  index.blob_size = 100;
  fs::Entry dir;
  dir.path = "etc";
  dir.type = fs::EntryType::kDirectory;
  dir.mode = 0755;
  index.entries = {dir};
  return index;
}

registry::Descriptor Layer(const std::string& blob) {
  registry::Descriptor d;
  d.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  d.digest = Sha256Digest(blob);
  d.size = 100;
  return d;
}

using LoadCachedLayersTest = test::TempCacheTest;

TEST_F(LoadCachedLayersTest, LoadsWhatIsCachedAndNothingDamaged) {
  registry::ImageManifest manifest;
  manifest.layers = {Layer("cached"), Layer("missing"), Layer("damaged")};
  ASSERT_TRUE(cache_->PutLayerIndex(Sha256Digest("cached"), TocIndex("cached").Serialize()).ok());
  // A body damaged before it was stored: the record's own checksum covers the damaged bytes,
  // so only the index's zstd frame (its content checksum) can tell.
  std::string damaged = TocIndex("damaged").Serialize();
  damaged[damaged.size() - 6] ^= 0x40;
  ASSERT_TRUE(cache_->PutLayerIndex(Sha256Digest("damaged"), damaged).ok());

  std::vector<std::shared_ptr<const fs::LayerIndex>> loaded = LoadCachedLayers(manifest, {},
                                                                               cache_.get());
  ASSERT_EQ(loaded.size(), 3u);
  ASSERT_NE(loaded[0], nullptr);
  EXPECT_EQ(loaded[0]->blob_digest, Sha256Digest("cached"));
  ASSERT_EQ(loaded[0]->entries.size(), 1u);
  EXPECT_EQ(loaded[0]->entries[0].path, "etc");
  EXPECT_EQ(loaded[1], nullptr);
  EXPECT_EQ(loaded[2], nullptr);

  // Offline, the damaged layer is then not served from the cache: it would have to be built.
  Result<std::vector<std::shared_ptr<const fs::LayerIndex>>> all = IndexLayers(
      manifest, {}, cache_.get(), nullptr, nullptr, &loaded);
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), Code::kUnavailable) << all.status().ToString();
  // Both are indexed at once and both fail; the one that failed first is named (the cause, in
  // a mount where one failure cancels the others).
  EXPECT_TRUE(all.status().message().find(Sha256Digest("missing")) != std::string::npos ||
              all.status().message().find(Sha256Digest("damaged")) != std::string::npos)
      << all.status().ToString();
  manifest.layers.erase(manifest.layers.begin() + 1);
  loaded.erase(loaded.begin() + 1);
  all = IndexLayers(manifest, {}, cache_.get(), nullptr, nullptr, &loaded);
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), Code::kUnavailable) << all.status().ToString();
  EXPECT_NE(all.status().message().find(Sha256Digest("damaged")), std::string::npos);
}

// The same damage is kCorrupt to the deserializer itself, whatever the record said.
TEST_F(LoadCachedLayersTest, DamagedZstdBodyIsCorrupt) {
  std::string damaged = TocIndex("damaged").Serialize();
  damaged[damaged.size() - 6] ^= 0x40;
  Result<fs::LayerIndex> r = fs::LayerIndex::Deserialize(damaged);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().ToString();
}

// An image config of another length than the manifest loads nothing; IndexLayers says why.
TEST_F(LoadCachedLayersTest, MismatchedDiffIdsLoadNothing) {
  registry::ImageManifest manifest;
  manifest.layers = {Layer("cached")};
  ASSERT_TRUE(cache_->PutLayerIndex(Sha256Digest("cached"), TocIndex("cached").Serialize()).ok());
  std::vector<std::shared_ptr<const fs::LayerIndex>> loaded = LoadCachedLayers(
      manifest, {Sha256Digest("a"), Sha256Digest("b")}, cache_.get());
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0], nullptr);
}

}  // namespace
}  // namespace imgfs::cli
