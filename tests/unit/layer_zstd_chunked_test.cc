// zstd:chunked TOC -> LayerIndex. Blobs are written here in the two layouts found in the wild:
// containers/storage's (pkg/chunked/compressor: a frame per chunk holding exactly the chunk,
// endOffset, single-chunk files verified by `digest`, "zeros" chunks, 64-byte footer) and
// stargz-snapshotter's (estargz layout in zstd frames: a chunk frame runs on with the next tar
// headers, innerOffset sharing, 40-byte footer, io.containers.* annotation names).
#include "fs/layer/zstd_chunked.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zstd.h>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "cache/cache.h"
#include "fs/layer/decode.h"
#include "fs/layer/estargz.h"
#include "fs/layer/layer_builder.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/files.h"
#include "tests/support/test_blobs.h"
#include "tests/support/toc_layer_read.h"

namespace imgfs::fs {
namespace {

using nlohmann::json;
using test::FakeBlobSource;
using test::FindEntry;
using test::RandomBytes;
using test::ReadEntry;
using test::TarPadding;
using ::testing::HasSubstr;

std::string Zstd(std::string_view data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string Le(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

std::string Skippable(std::string_view payload) {
  return Le(0x184D2A50, 4) + Le(payload.size(), 4) + std::string(payload);
}

std::string TarHeader(const std::string& name, uint64_t size) {
  std::string h(512, '\0');
  h.replace(0, name.size(), name);
  char sz[13];
  snprintf(sz, sizeof sz, "%011llo", static_cast<unsigned long long>(size));
  h.replace(124, 11, sz);
  h[156] = '0';
  return h;
}

struct Piece {
  std::string bytes;
  bool zeros = false;
};

struct Item {
  std::string name;
  std::string type = "reg";
  std::vector<Piece> pieces;  // file content, split as the writer chunked it
  std::string link;
  std::map<std::string, std::string> xattrs;  // base64 values, as in the TOC
  std::string Content() const {
    std::string s;
    for (const Piece& p : pieces) s += p.bytes;
    return s;
  }
};

Item Reg(std::string name, std::vector<Piece> pieces) {
  Item it;
  it.name = std::move(name);
  it.pieces = std::move(pieces);
  return it;
}
Item Other(std::string name, std::string type, std::string link = "") {
  Item it;
  it.name = std::move(name);
  it.type = std::move(type);
  it.link = std::move(link);
  return it;
}

struct Blob {
  std::string bytes;
  std::string compressed_toc;
  uint64_t toc_offset = 0;
  std::string toc_json;
  std::string position;  // the annotation value
};

enum class Layout { kContainersStorage, kStargzSnapshotter };

class ZstdChunkedWriter {
 public:
  explicit ZstdChunkedWriter(Layout layout) : layout_(layout) {}
  bool footer40 = false;
  bool share_small_files = false;  // stargz-snapshotter layout only

  Blob Write(const std::vector<Item>& items) {
    for (const Item& it : items) Add(it);
    return Finish(toc_.dump());
  }

  Blob Finish(const std::string& toc_json) {
    cur_ += std::string(1024, '\0');
    CloseFrame();
    Blob b;
    b.toc_json = toc_json;
    b.compressed_toc = Zstd(toc_json);
    b.toc_offset = blob_.size() + 8;
    blob_ += Skippable(b.compressed_toc);
    std::string tarsplit = Zstd("{\"tar-split\":true}");
    uint64_t tarsplit_off = blob_.size() + 8;
    blob_ += Skippable(tarsplit);
    std::string footer = Le(b.toc_offset, 8) + Le(b.compressed_toc.size(), 8) +
                         Le(toc_json.size(), 8) + Le(1, 8);
    if (footer40) {
      footer += "GnUlInUx";
    } else {
      footer += Le(tarsplit_off, 8) + Le(tarsplit.size(), 8) + Le(18, 8) + "GNUlInUx";
    }
    blob_ += Skippable(footer);
    b.bytes = blob_;
    b.position = std::to_string(b.toc_offset) + ":" + std::to_string(b.compressed_toc.size()) +
                 ":" + std::to_string(toc_json.size()) + ":1";
    return b;
  }

 private:
  void CloseFrame() {
    if (!cur_.empty()) blob_ += Zstd(cur_);
    cur_.clear();
    cur_off_ = blob_.size();
  }

  void Add(const Item& it) {
    json e;
    e["name"] = it.name;
    e["type"] = it.type;
    e["mode"] = it.type == "dir" ? 0755 : 0644;
    e["uid"] = 0;
    e["gid"] = 0;
    e["modtime"] = "2023-01-02T03:04:05.5+02:00";
    if (!it.link.empty()) e["linkName"] = it.link;
    if (!it.xattrs.empty()) e["xattrs"] = it.xattrs;
    std::string content = it.Content();
    cur_ += TarHeader(it.name, content.size());
    if (content.empty()) {
      toc_["entries"].push_back(e);
      return;
    }
    e["size"] = content.size();
    e["digest"] = Sha256Digest(content);
    const bool multi = it.pieces.size() > 1;
    uint64_t written = 0;
    std::vector<json> out;
    for (size_t i = 0; i < it.pieces.size(); ++i) {
      const Piece& p = it.pieces[i];
      json c = i == 0 ? e : json{{"name", it.name}, {"type", "chunk"}};
      if (layout_ == Layout::kStargzSnapshotter && share_small_files && written == 0 &&
          !blob_.empty() && cur_off_ != 0 && started_data_frame_) {
        c["offset"] = cur_off_;
        c["innerOffset"] = cur_.size();
      } else {
        CloseFrame();
        c["offset"] = cur_off_;
      }
      started_data_frame_ = true;
      if (i != 0) c["chunkOffset"] = written;
      if (multi || layout_ == Layout::kStargzSnapshotter) {
        c["chunkSize"] = p.bytes.size();
        c["chunkDigest"] = Sha256Digest(p.bytes);
        if (p.zeros) c["chunkType"] = "zeros";
      }
      cur_ += p.bytes;
      if (layout_ == Layout::kContainersStorage) CloseFrame();
      written += p.bytes.size();
      out.push_back(c);
    }
    if (layout_ == Layout::kContainersStorage) out[0]["endOffset"] = cur_off_;
    for (json& c : out) toc_["entries"].push_back(c);
    cur_ += TarPadding(content.size());
  }

  Layout layout_;
  std::string blob_;
  std::string cur_;
  uint64_t cur_off_ = 0;
  bool started_data_frame_ = false;
  json toc_ = json{{"version", 1}, {"entries", json::array()}};
};

LayerDescriptor Descriptor(const Blob& b, bool legacy_names = false) {
  LayerDescriptor d;
  d.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
  d.digest = Sha256Digest(b.bytes);
  d.size = b.bytes.size();
  d.annotations[std::string(legacy_names ? kZstdChunkedLegacyChecksumAnnotation
                                         : kZstdChunkedChecksumAnnotation)] =
      Sha256Digest(b.compressed_toc);
  d.annotations[std::string(legacy_names ? kZstdChunkedLegacyPositionAnnotation
                                         : kZstdChunkedPositionAnnotation)] = b.position;
  return d;
}

std::vector<Item> SampleItems() {
  std::vector<Item> items;
  items.push_back(Other("usr/", "dir"));
  items.push_back(Reg("usr/small", {{"small file\n"}}));
  items.push_back(
      Reg("usr/sparse",
          {{RandomBytes(3000, 1)}, {std::string(4096, '\0'), true}, {RandomBytes(1234, 2)}}));
  items.push_back(Reg("usr/empty", {}));
  items.push_back(Other("usr/link", "symlink", "small"));
  items.push_back(Other("usr/hard", "hardlink", "usr/small"));
  Item x = Reg("usr/x", {{"with xattr"}});
  x.xattrs["user.k"] = "dmFsdWU=";  // "value"
  items.push_back(x);
  items.push_back(Reg("usr/.wh.removed", {}));
  items.push_back(Reg("usr/big", {{RandomBytes(70000, 3)}}));
  return items;
}

void ExpectSampleIndex(const LayerIndex& index, const Blob& b) {
  EXPECT_EQ(index.format, "zstd:chunked");
  std::vector<std::string> paths;
  for (const Entry& e : index.entries) paths.push_back(e.path);
  EXPECT_THAT(paths,
              ::testing::ElementsAre("usr", "usr/small", "usr/sparse", "usr/empty", "usr/link",
                                     "usr/hard", "usr/x", "usr/removed", "usr/big"));
  const Entry* sparse = FindEntry(index, "usr/sparse");
  ASSERT_EQ(sparse->chunks.size(), 3u);
  EXPECT_EQ(sparse->chunks[1].unit, Chunk::kZeroUnit);
  EXPECT_EQ(sparse->chunks[1].file_offset, 3000u);
  EXPECT_EQ(sparse->chunks[1].length, 4096u);
  EXPECT_EQ(FindEntry(index, "usr/link")->link_target, "small");
  EXPECT_EQ(FindEntry(index, "usr/hard")->link_target, "usr/small");
  EXPECT_TRUE(FindEntry(index, "usr/removed")->whiteout);
  EXPECT_EQ(FindEntry(index, "usr/x")->xattrs.at(0),
            std::make_pair(std::string("user.k"), std::string("value")));
  EXPECT_EQ(FindEntry(index, "usr/small")->mtime_sec, 1672621445);
  EXPECT_EQ(FindEntry(index, "usr/small")->mtime_nsec, 500000000u);
  EXPECT_EQ(FindEntry(index, "usr")->mode, 0755u);
  for (const Unit& u : index.units) {
    EXPECT_EQ(u.codec, UnitCodec::kZstdFrame);
    EXPECT_TRUE(u.sha256.empty());
    EXPECT_LE(u.coff + u.clen, b.toc_offset - 8);
  }
  for (const Item& it : SampleItems()) {
    if (it.type != "reg" || it.name.find(".wh.") != std::string::npos) continue;
    const Entry* e = FindEntry(index, it.name);
    ASSERT_NE(e, nullptr) << it.name;
    EXPECT_EQ(e->size, it.Content().size());
    EXPECT_EQ(ReadEntry(index, b.bytes, *e), it.Content()) << it.name;
  }
}

TEST(ZstdChunkedTest, ContainersStorageLayout) {
  ZstdChunkedWriter w(Layout::kContainersStorage);
  Blob b = w.Write(SampleItems());
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  auto toc = BuildZstdChunkedIndex(Descriptor(b), &source);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(source.requests(), 1) << "the TOC position comes from the annotation";
  ExpectSampleIndex(*toc, b);
  // Each chunk frame holds exactly the chunk: the units are tight.
  for (const Unit& u : toc->units) {
    auto decoded = DecodeUnit(u, std::string_view(b.bytes).substr(u.coff, u.clen));
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(ZSTD_findFrameCompressedSize(b.bytes.data() + u.coff, u.clen), u.clen);
  }
}

TEST(ZstdChunkedTest, StargzSnapshotterLayoutWithLegacyAnnotations) {
  ZstdChunkedWriter w(Layout::kStargzSnapshotter);
  w.footer40 = true;
  w.share_small_files = true;
  Blob b = w.Write(SampleItems());
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  ASSERT_TRUE(IsZstdChunkedLayer(Descriptor(b, /*legacy_names=*/true)));
  auto toc = BuildZstdChunkedIndex(Descriptor(b, /*legacy_names=*/true), &source);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  ExpectSampleIndex(*toc, b);
  EXPECT_GT(FindEntry(*toc, "usr/x")->chunks[0].unit_offset, 0u) << "shares a frame";
}

TEST(ZstdChunkedTest, PositionFromTheFooterWhenNotAnnotated) {
  for (bool footer40 : {false, true}) {
    ZstdChunkedWriter w(Layout::kContainersStorage);
    w.footer40 = footer40;
    Blob b = w.Write(SampleItems());
    LayerDescriptor d = Descriptor(b);
    d.annotations.erase(std::string(kZstdChunkedPositionAnnotation));
    FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
    auto toc = BuildZstdChunkedIndex(d, &source);
    ASSERT_TRUE(toc.ok()) << toc.status().ToString();
    EXPECT_EQ(source.requests(), 2);
    ExpectSampleIndex(*toc, b);
    auto pos = ParseZstdChunkedFooter(b.bytes);
    ASSERT_TRUE(pos.ok());
    EXPECT_EQ(pos->offset, b.toc_offset);
    EXPECT_EQ(pos->length, b.compressed_toc.size());
  }
}

TEST(ZstdChunkedTest, BuildZstdChunkedIndexReturnsTheIndex) {
  ZstdChunkedWriter w(Layout::kContainersStorage);
  Blob b = w.Write(SampleItems());
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  auto index = BuildZstdChunkedIndex(Descriptor(b), &source);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->entries.size(), 9u);
  EXPECT_EQ(index->blob_size, b.bytes.size());
}

TEST(ZstdChunkedTest, LayerWithBothAnnotationsIsReadAsZstdChunked) {
  // stargz-snapshotter annotates its zstd:chunked layers with the eStargz TOC digest too.
  ZstdChunkedWriter w(Layout::kStargzSnapshotter);
  Blob b = w.Write(SampleItems());
  LayerDescriptor d = Descriptor(b, /*legacy_names=*/true);
  d.annotations[std::string(kEstargzTocDigestAnnotation)] = Sha256Digest(b.toc_json);
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  test::TempDir dir("zstd-chunked-dispatch");
  auto cache = cache::Cache::Open(dir.Sub("cache"));
  ASSERT_TRUE(cache.ok()) << cache.status().ToString();
  auto index = GetOrBuildLayerIndex(d, cache->get(), &source);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  ExpectSampleIndex(*index, b);
}

TEST(ZstdChunkedTest, ChecksumMismatchIsRefused) {
  ZstdChunkedWriter w(Layout::kContainersStorage);
  Blob b = w.Write(SampleItems());
  LayerDescriptor d = Descriptor(b);
  d.annotations[std::string(kZstdChunkedChecksumAnnotation)] = Sha256Digest("other");
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  auto toc = BuildZstdChunkedIndex(d, &source);
  EXPECT_EQ(toc.status().code(), Code::kDigestMismatch);
  EXPECT_THAT(toc.status().message(),
              HasSubstr("TOC of layer " + d.digest + " does not match its annotation"));
}

TEST(ZstdChunkedTest, LayerWithoutChecksumIsNotTrusted) {
  ZstdChunkedWriter w(Layout::kContainersStorage);
  Blob b = w.Write(SampleItems());
  LayerDescriptor d = Descriptor(b);
  d.annotations.erase(std::string(kZstdChunkedChecksumAnnotation));
  EXPECT_FALSE(IsZstdChunkedLayer(d));
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  EXPECT_EQ(BuildZstdChunkedIndex(d, &source).status().code(), Code::kInvalidArgument);
}

TEST(ZstdChunkedTest, BadPositionsAreRefused) {
  EXPECT_EQ(ParseZstdChunkedPosition("1:2:3").status().code(), Code::kCorrupt);
  EXPECT_EQ(ParseZstdChunkedPosition("1:2:3:x").status().code(), Code::kCorrupt);
  EXPECT_EQ(ParseZstdChunkedPosition("-1:2:3:1").status().code(), Code::kCorrupt);
  EXPECT_EQ(ParseZstdChunkedPosition("1:2:3:2").status().code(), Code::kUnsupported);
  auto ok = ParseZstdChunkedPosition("10:20:30:1");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->offset, 10u);
  EXPECT_EQ(ok->length, 20u);
  EXPECT_EQ(ok->uncompressed_length, 30u);
  EXPECT_EQ(ParseZstdChunkedFooter(std::string(100, 'x')).status().code(), Code::kCorrupt);

  ZstdChunkedWriter w(Layout::kContainersStorage);
  Blob b = w.Write(SampleItems());
  for (std::string position :
       {std::to_string(b.bytes.size()) + ":100:100:1", std::string("4:10:10:1"),
        std::string("100:0:0:1"), std::to_string(b.toc_offset) + ":99999999999:10:1"}) {
    LayerDescriptor d = Descriptor(b);
    d.annotations[std::string(kZstdChunkedPositionAnnotation)] = position;
    FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
    EXPECT_EQ(BuildZstdChunkedIndex(d, &source).status().code(), Code::kCorrupt) << position;
  }
}

Status StatusForToc(const std::string& toc_json) {
  // The data frames of a real one-file layer, then `toc_json` as its TOC.
  ZstdChunkedWriter w(Layout::kContainersStorage);
  Blob real = w.Write({Reg("f", {{"0123456789"}})});
  std::string data = real.bytes.substr(0, real.toc_offset - 8);
  Blob blob;
  blob.compressed_toc = Zstd(toc_json);
  blob.toc_offset = data.size() + 8;
  blob.bytes = data + Skippable(blob.compressed_toc);
  blob.position = std::to_string(blob.toc_offset) + ":" +
                  std::to_string(blob.compressed_toc.size()) + ":" +
                  std::to_string(toc_json.size()) + ":1";
  FakeBlobSource source(blob.bytes, FakeBlobSource::Serve::kAnyDigest);
  return BuildZstdChunkedIndex(Descriptor(blob), &source).status();
}

TEST(ZstdChunkedTest, MalformedTocsAreCorrupt) {
  const std::string d = Sha256Digest("x");
  for (
      const std::string& toc_json : std::vector<std::string>{
          "{",
          R"({"entries":"no"})",
          R"({"version":1,"entries":[{"type":"reg","name":"f","size":10,"offset":99999,"endOffset":100000,"digest":")" +
              d + R"("}]})",
          R"({"version":1,"entries":[{"type":"reg","name":"f","size":10,"offset":1,"chunkSize":4,"chunkDigest":")" +
              d + R"(","chunkType":"weird"}]})",
          R"({"version":1,"entries":[{"type":"reg","name":"f","size":10,"offset":1}]})",
          R"({"version":1,"entries":[{"type":"reg","name":"f","size":10,"offset":1,"chunkSize":4,"chunkDigest":")" +
              d +
              R"("},{"type":"chunk","name":"f","offset":5,"chunkOffset":4,"chunkSize":9,"chunkDigest":")" +
              d + R"("}]})",
      }) {
    Status s = StatusForToc(toc_json);
    EXPECT_TRUE(s.code() == Code::kCorrupt || s.code() == Code::kUnsupported)
        << toc_json << " -> " << s.ToString();
  }
  EXPECT_TRUE(StatusForToc(R"({"version":1,"entries":[]})").ok());
}

TEST(ZstdChunkedTest, TocThatIsNotZstdIsCorrupt) {
  ZstdChunkedWriter w(Layout::kContainersStorage);
  Blob b = w.Write(SampleItems());
  // Point the position (and a matching checksum) at bytes that are not a zstd frame.
  LayerDescriptor d = Descriptor(b);
  d.annotations[std::string(kZstdChunkedPositionAnnotation)] = "8:32:100:1";
  d.annotations[std::string(kZstdChunkedChecksumAnnotation)] = Sha256Digest(b.bytes.substr(8, 32));
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  Status s = BuildZstdChunkedIndex(d, &source).status();
  EXPECT_EQ(s.code(), Code::kCorrupt) << s.ToString();
}

}  // namespace
}  // namespace imgfs::fs
