// The shared form of a layer index (fs/layer/shared_index.h): a round trip of a real index
// (a gzip tar through the streaming pass), and the refusals of a blob that does not describe
// the layer it is used for or breaks a limit.
#include "fs/layer/shared_index.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "base/digest.h"
#include "fs/layer/stream_index.h"
#include "tests/support/tar_builder.h"
#include "tests/support/test_blobs.h"

namespace imgfs::fs {
namespace {

struct Built {
  LayerIndex index;
  LayerDescriptor layer;
};

Built BuildGzipIndex() {
  std::string tar = test::File("etc/hello", "hello\n") +
                    test::File("big", test::RandomBytes(3 << 20, 7)) + test::End();
  std::string blob = test::GzipMember(tar);
  StreamIndexOptions options;
  options.span = 256 << 10;
  StreamIndexer indexer(options);
  EXPECT_TRUE(indexer.Feed(blob).ok());
  Result<LayerIndex> index = indexer.Finish();
  EXPECT_TRUE(index.ok()) << index.status().ToString();
  Built out;
  out.index = std::move(index).value();
  out.index.diff_id = indexer.diff_id();
  out.layer.digest = out.index.blob_digest;
  out.layer.size = out.index.blob_size;
  out.layer.diff_id = indexer.diff_id();
  return out;
}

TEST(SharedIndexTest, RoundTripKeepsEveryField) {
  Built b = BuildGzipIndex();
  ASSERT_GT(b.index.units.size(), 3u);
  Result<std::string> blob = EncodeSharedIndex(b.index);
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  EXPECT_EQ(blob->substr(0, 8), "IMGFSSIX");
  Result<LayerIndex> back = DecodeSharedIndex(*blob, b.layer);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->Serialize(), b.index.Serialize());
}

TEST(SharedIndexTest, RefusesAnIndexOfAnotherLayer) {
  Built b = BuildGzipIndex();
  std::string blob = *EncodeSharedIndex(b.index);
  LayerDescriptor other = b.layer;
  other.digest = "sha256:" + std::string(64, 'c');
  Result<LayerIndex> r = DecodeSharedIndex(blob, other);
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("indexes layer " + b.layer.digest), std::string::npos)
      << r.status().ToString();

  LayerDescriptor bigger = b.layer;
  bigger.size += 1;
  EXPECT_EQ(DecodeSharedIndex(blob, bigger).status().code(), Code::kCorrupt);

  LayerDescriptor diff = b.layer;
  diff.diff_id = "sha256:" + std::string(64, 'd');
  r = DecodeSharedIndex(blob, diff);
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("image config says"), std::string::npos);
}

TEST(SharedIndexTest, RefusesDamageAndUnknownVersions) {
  Built b = BuildGzipIndex();
  std::string blob = *EncodeSharedIndex(b.index);
  std::string v2 = blob;
  v2[8] = 2;
  Result<LayerIndex> r = DecodeSharedIndex(v2, b.layer);
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("unknown version 2"), std::string::npos);
  EXPECT_EQ(DecodeSharedIndex(blob.substr(0, blob.size() / 2), b.layer).status().code(),
            Code::kCorrupt);
  EXPECT_EQ(DecodeSharedIndex(blob + "x", b.layer).status().code(), Code::kCorrupt);
  EXPECT_EQ(DecodeSharedIndex("IMGFSLIX", b.layer).status().code(), Code::kCorrupt);
}

TEST(SharedIndexTest, OnlyStreamedFormatsWithADiffIdAreShared) {
  Built b = BuildGzipIndex();
  LayerIndex toc = b.index;
  toc.format = "estargz";
  EXPECT_EQ(EncodeSharedIndex(toc).status().code(), Code::kInvalidArgument);
  LayerIndex unhashed = b.index;
  unhashed.diff_id.clear();
  EXPECT_EQ(EncodeSharedIndex(unhashed).status().code(), Code::kInvalidArgument);
}

TEST(SharedIndexTest, CountLimitsAreCheckedBeforeAllocating) {
  Built b = BuildGzipIndex();
  const std::string body = *SerializeLayerIndexBody(b.index);
  Result<LayerIndex> r = DeserializeLayerIndexBody(body, 1, kMaxSharedIndexUnits);
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("more than the limit of 1"), std::string::npos)
      << r.status().ToString();
  r = DeserializeLayerIndexBody(body, kMaxSharedIndexEntries, 2);
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("units, more than the limit of 2"), std::string::npos);
  EXPECT_TRUE(DeserializeLayerIndexBody(body, kMaxSharedIndexEntries, kMaxSharedIndexUnits).ok());
}

// The fuzz target's seeds reach the accepting path (tests/fuzz/make_corpus.py rewrites them to
// index the layer shared_index_fuzz.cc decodes for).
TEST(SharedIndexTest, TheFuzzSeedsDecode) {
  LayerDescriptor layer;
  layer.digest = "sha256:" + std::string(64, 'a');
  layer.size = uint64_t{1} << 40;
  for (const char* name : {"gzip.tar.gz", "raw.tar", "multi-unit.tar.gz"}) {
    std::ifstream in(std::string(IMGFS_SOURCE_DIR) + "/tests/fuzz/corpus/shared_index_fuzz/seed-" +
                         name + ".six",
                     std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_FALSE(bytes.empty()) << name;
    Result<LayerIndex> index = DecodeSharedIndex(bytes, layer);
    ASSERT_TRUE(index.ok()) << name << ": " << index.status().ToString();
    EXPECT_FALSE(index->entries.empty()) << name;
  }
}

}  // namespace
}  // namespace imgfs::fs
