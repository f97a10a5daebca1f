#include "fs/layer/layer_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <zlib.h>
#include <zstd.h>

#include <random>

#include "base/digest.h"

namespace imgfs::fs {
namespace {

LayerIndex SampleIndex() {
  LayerIndex index;
  index.blob_digest = Sha256Digest("blob");
  index.format = "gzip";
  index.blob_size = 5000;

  Unit u0;
  u0.codec = UnitCodec::kZran;
  u0.coff = 0;
  u0.clen = 3000;
  u0.sha256 = Sha256Digest("u0");
  u0.ulen = 1 << 20;
  u0.at_member_start = true;
  Unit u1;
  u1.codec = UnitCodec::kZran;
  u1.coff = 2999;
  u1.clen = 2001;
  u1.sha256 = Sha256Digest("u1");
  u1.ulen = 4096;
  u1.bits = 5;
  u1.window = std::string(32768, 'w');
  index.prefetch_end = 1234;
  index.diff_id = Sha256Digest("the uncompressed stream");
  index.units = {u0, u1};

  Entry dir;
  dir.path = "usr";
  dir.type = EntryType::kDirectory;
  dir.mode = 0755;
  Entry file;
  file.path = "usr/bin/tool";
  file.mode = 04755;
  file.uid = 4000000000u;
  file.gid = 7;
  file.mtime_sec = -5;
  file.mtime_nsec = 999999999;
  file.size = 1000;
  file.xattrs = {{"security.capability", std::string("\0\x01\xff", 3)}, {"user.a", ""}};
  file.chunks = {{0, 600, 0, (1 << 20) - 600}, {600, 400, 1, 0}};
  file.chunks[1].sha256 = Sha256Digest("decoded chunk");
  Entry dev;
  dev.path = "dev/sda";
  dev.type = EntryType::kBlockDevice;
  dev.dev_major = 8;
  dev.dev_minor = 1;
  Entry wh;
  wh.path = "etc/gone";
  wh.whiteout = true;
  Entry opq;
  opq.path = "var";
  opq.opaque = true;
  Entry link;
  link.path = "usr/bin/alias";
  link.type = EntryType::kHardlink;
  link.link_target = "usr/bin/tool";
  Entry hole;
  hole.path = "sparse";
  hole.size = 10;
  hole.chunks = {{0, 10, Chunk::kZeroUnit, 0}};
  index.entries = {dir, file, dev, wh, opq, link, hole};
  return index;
}

void ExpectSame(const LayerIndex& a, const LayerIndex& b) {
  EXPECT_EQ(a.blob_digest, b.blob_digest);
  EXPECT_EQ(a.format, b.format);
  EXPECT_EQ(a.blob_size, b.blob_size);
  EXPECT_EQ(a.prefetch_end, b.prefetch_end);
  EXPECT_EQ(a.diff_id, b.diff_id);
  ASSERT_EQ(a.entries.size(), b.entries.size());
  for (size_t i = 0; i < a.entries.size(); ++i) {
    const Entry& x = a.entries[i];
    const Entry& y = b.entries[i];
    EXPECT_EQ(x.path, y.path);
    EXPECT_EQ(x.type, y.type);
    EXPECT_EQ(x.mode, y.mode);
    EXPECT_EQ(x.uid, y.uid);
    EXPECT_EQ(x.gid, y.gid);
    EXPECT_EQ(x.mtime_sec, y.mtime_sec);
    EXPECT_EQ(x.mtime_nsec, y.mtime_nsec);
    EXPECT_EQ(x.size, y.size);
    EXPECT_EQ(x.link_target, y.link_target);
    EXPECT_EQ(x.dev_major, y.dev_major);
    EXPECT_EQ(x.dev_minor, y.dev_minor);
    EXPECT_EQ(x.xattrs, y.xattrs);
    EXPECT_EQ(x.whiteout, y.whiteout);
    EXPECT_EQ(x.opaque, y.opaque);
    ASSERT_EQ(x.chunks.size(), y.chunks.size());
    for (size_t c = 0; c < x.chunks.size(); ++c) {
      EXPECT_EQ(x.chunks[c].file_offset, y.chunks[c].file_offset);
      EXPECT_EQ(x.chunks[c].length, y.chunks[c].length);
      EXPECT_EQ(x.chunks[c].unit, y.chunks[c].unit);
      EXPECT_EQ(x.chunks[c].unit_offset, y.chunks[c].unit_offset);
      EXPECT_EQ(x.chunks[c].sha256, y.chunks[c].sha256);
    }
  }
  ASSERT_EQ(a.units.size(), b.units.size());
  for (size_t i = 0; i < a.units.size(); ++i) {
    const Unit& x = a.units[i];
    const Unit& y = b.units[i];
    EXPECT_EQ(x.codec, y.codec);
    EXPECT_EQ(x.coff, y.coff);
    EXPECT_EQ(x.clen, y.clen);
    EXPECT_EQ(x.sha256, y.sha256);
    EXPECT_EQ(x.ulen, y.ulen);
    EXPECT_EQ(x.bits, y.bits);
    EXPECT_EQ(x.at_member_start, y.at_member_start);
    std::string xs, ys;
    EXPECT_EQ(*UnitWindow(x, &xs), *UnitWindow(y, &ys)) << i;
  }
}

TEST(LayerIndexTest, RoundTripKeepsEveryField) {
  LayerIndex index = SampleIndex();
  ASSERT_TRUE(ValidateLayerIndex(index).ok()) << ValidateLayerIndex(index).ToString();
  std::string bytes = index.Serialize();
  Result<LayerIndex> back = LayerIndex::Deserialize(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSame(index, *back);
  // Windows are mostly repetitive here: the body is compressed.
  EXPECT_LT(bytes.size(), 4096u);
}

TEST(LayerIndexTest, EmptyIndexRoundTrips) {
  LayerIndex index;
  index.blob_digest = Sha256Digest("");
  index.format = "tar";
  Result<LayerIndex> back = LayerIndex::Deserialize(index.Serialize());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back->entries.empty());
}

TEST(LayerIndexTest, SmallestEntriesRoundTrip) {
  // The root directory of a TOC without names or times: the shortest entry record there is
  // (14 bytes), which the reader once counted as too short to be real.
  LayerIndex index;
  index.blob_digest = Sha256Digest("");
  index.format = "estargz";
  Entry root;
  root.type = EntryType::kDirectory;
  index.entries = {root, root};
  Result<LayerIndex> back = LayerIndex::Deserialize(index.Serialize());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSame(index, *back);
}

// The serialized form of an index cached by an earlier imgfs: `version` with `body` compressed
// by zlib (versions 2 and 3).
std::string ZlibIndex(char version, const std::string& body) {
  uLongf clen = compressBound(body.size());
  std::string compressed(clen, '\0');
  EXPECT_EQ(compress(reinterpret_cast<Bytef*>(compressed.data()), &clen,
                     reinterpret_cast<const Bytef*>(body.data()), body.size()),
            Z_OK);
  compressed.resize(clen);
  std::string out = std::string("IMGFSLIX") + version;
  for (uint64_t v = body.size();; v >>= 7) {
    if (v < 0x80) {
      out += static_cast<char>(v);
      break;
    }
    out += static_cast<char>((v & 0x7f) | 0x80);
  }
  return out + compressed;
}

// One LEB128 varint of `bytes` at `*pos`.
uint64_t ReadVarint(std::string_view bytes, size_t* pos) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    uint8_t b = static_cast<uint8_t>(bytes[(*pos)++]);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
}

// The Frame_Header_Descriptor after the 4-byte magic: bit 2 is Content_Checksum_flag.
bool HasChecksum(std::string_view frame) {
  return frame.size() > 4 && (static_cast<uint8_t>(frame[4]) & 0x04) != 0;
}

// Version 5: the body as one zstd frame, then each window as a frame of its own, so that a
// reader decodes the body alone and a window only when its unit is decoded.
TEST(LayerIndexTest, CurrentVersionKeepsTheWindowsOutOfTheBody) {
  std::string bytes = SampleIndex().Serialize();
  ASSERT_EQ(bytes.substr(0, 9), std::string("IMGFSLIX") + '\x05');
  size_t pos = 9;
  const uint64_t body_len = ReadVarint(bytes, &pos);
  const uint64_t body_zlen = ReadVarint(bytes, &pos);
  std::string_view body = std::string_view(bytes).substr(pos, body_zlen);
  EXPECT_EQ(ZSTD_getFrameContentSize(body.data(), body.size()), body_len);
  EXPECT_EQ(ZSTD_findFrameCompressedSize(body.data(), body.size()), body.size());
  EXPECT_TRUE(HasChecksum(body));
  // The body is the inline body without the 32 KiB window.
  EXPECT_LT(body_len + 32000, SerializeLayerIndexBody(SampleIndex())->size());
  std::string_view window = std::string_view(bytes).substr(pos + body_zlen);
  EXPECT_EQ(ZSTD_getFrameContentSize(window.data(), window.size()), 32768u);
  EXPECT_EQ(ZSTD_findFrameCompressedSize(window.data(), window.size()), window.size());
  EXPECT_TRUE(HasChecksum(window));

  Result<LayerIndex> back = LayerIndex::Deserialize(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back->units[1].window.empty());  // not decoded by the load
  EXPECT_EQ(back->units[1].window_frame, window);
  EXPECT_FALSE(IsOlderLayerIndexVersion(bytes));
}

// Indexes cached by an imgfs before the windows left the body (version 4: the inline body as
// one zstd frame) are still read, and known to be worth storing again.
TEST(LayerIndexTest, VersionFourIsStillRead) {
  LayerIndex index = SampleIndex();
  const std::string body = *SerializeLayerIndexBody(index);
  std::string frame(ZSTD_compressBound(body.size()), '\0');
  size_t n = ZSTD_compress(frame.data(), frame.size(), body.data(), body.size(), 3);
  ASSERT_FALSE(ZSTD_isError(n));
  std::string bytes = std::string("IMGFSLIX") + '\x04';
  for (uint64_t v = body.size();; v >>= 7) {
    if (v < 0x80) {
      bytes += static_cast<char>(v);
      break;
    }
    bytes += static_cast<char>((v & 0x7f) | 0x80);
  }
  bytes += frame.substr(0, n);
  Result<LayerIndex> back = LayerIndex::Deserialize(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSame(index, *back);
  EXPECT_EQ(back->units[1].window, index.units[1].window);
  EXPECT_TRUE(IsOlderLayerIndexVersion(bytes));
  // Stored again, it is version 5 and reads back the same.
  Result<LayerIndex> again = LayerIndex::Deserialize(back->Serialize());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ExpectSame(index, *again);
}

// A window frame whose data is damaged (its header intact) is accepted by the load, which
// does not decode it, and refused with kCorrupt when its unit is decoded: the frame's own
// XXH64 checksum (in the cache, the record's sha256 refuses it first).
TEST(LayerIndexTest, DamagedWindowIsCorruptWhenItsUnitIsDecoded) {
  std::string bytes = SampleIndex().Serialize();
  bytes[bytes.size() - 6] ^= 0x20;  // inside the last frame's data or checksum
  Result<LayerIndex> back = LayerIndex::Deserialize(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  std::string scratch;
  Result<std::string_view> window = UnitWindow(back->units[1], &scratch);
  ASSERT_FALSE(window.ok());
  EXPECT_EQ(window.status().code(), Code::kCorrupt);
  EXPECT_NE(window.status().message().find("offset 2999"), std::string::npos)
      << window.status().ToString();
  // Nor can it be shared in the inline form.
  EXPECT_EQ(SerializeLayerIndexBody(*back).status().code(), Code::kCorrupt);
}

// Indexes cached by an imgfs before the zstd body (version 3: the same body compressed with
// zlib) are still read as they are.
TEST(LayerIndexTest, VersionThreeIsStillRead) {
  LayerIndex index = SampleIndex();
  Result<LayerIndex> back = LayerIndex::Deserialize(
      ZlibIndex('\x03', *SerializeLayerIndexBody(index)));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSame(index, *back);
}

// Indexes cached before the diff_id was recorded (version 2: the same body without it) are
// still read, with an empty diff_id, so that the layer builder knows they were not checked.
TEST(LayerIndexTest, VersionTwoIsReadWithoutADiffId) {
  LayerIndex index = SampleIndex();
  index.diff_id.clear();
  std::string body = *SerializeLayerIndexBody(index);
  // blob_digest and format (1-byte lengths), blob_size 5000 (2 bytes), prefetch_end 1234
  // (2 bytes), then the empty diff_id: one 0 byte, which version 2 does not have.
  size_t at = 1 + index.blob_digest.size() + 1 + index.format.size() + 2 + 2;
  ASSERT_EQ(body[at], '\0');
  body.erase(at, 1);
  Result<LayerIndex> back = LayerIndex::Deserialize(ZlibIndex('\x02', body));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSame(index, *back);
  EXPECT_TRUE(back->diff_id.empty());
}

TEST(LayerIndexTest, StatedSizeBeyondTheCompressedBodyIsCorrupt) {
  // Magic, version 2, a body of 2 GiB - 1 (the varint ff ff ff ff 07), then 10 bytes of
  // "compressed body": refused before anything of that size is allocated.
  std::string bytes = std::string("IMGFSLIX") + '\x02' + "\xff\xff\xff\xff\x07" +
                      std::string(10, '\0');
  Result<LayerIndex> r = LayerIndex::Deserialize(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("stated size"), std::string::npos) << r.status().ToString();
  // The same for the zstd body of version 4.
  bytes[8] = '\x04';
  r = LayerIndex::Deserialize(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("stated size"), std::string::npos) << r.status().ToString();
}

// A frame whose stated content size is not the header's body length, and a zlib body under
// the zstd version, are refused.
TEST(LayerIndexTest, BodyOfAnotherSizeOrCodecIsCorrupt) {
  LayerIndex index = SampleIndex();
  std::string body = *SerializeLayerIndexBody(index);
  std::string zlib4 = ZlibIndex('\x03', body);
  zlib4[8] = '\x04';
  EXPECT_EQ(LayerIndex::Deserialize(zlib4).status().code(), Code::kCorrupt);
  std::string bytes = index.Serialize();
  ASSERT_EQ(static_cast<uint8_t>(bytes[9]) & 0x80, 0x80);  // a body length of several bytes
  bytes[9] = static_cast<char>(static_cast<uint8_t>(bytes[9]) ^ 1);  // off by one
  Result<LayerIndex> r = LayerIndex::Deserialize(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().ToString();
}

TEST(LayerIndexTest, EveryTruncationIsCorrupt) {
  std::string bytes = SampleIndex().Serialize();
  for (size_t len = 0; len < bytes.size(); ++len) {
    Result<LayerIndex> r = LayerIndex::Deserialize(std::string_view(bytes).substr(0, len));
    ASSERT_FALSE(r.ok()) << len;
    EXPECT_EQ(r.status().code(), Code::kCorrupt) << len;
  }
  EXPECT_EQ(LayerIndex::Deserialize(bytes + "x").status().code(), Code::kCorrupt);
}

TEST(LayerIndexTest, DamagedBytesAreRejected) {
  std::string bytes = SampleIndex().Serialize();
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string damaged = bytes;
    size_t pos = rng() % damaged.size();
    damaged[pos] ^= static_cast<char>(1 + rng() % 255);
    Result<LayerIndex> r = LayerIndex::Deserialize(damaged);
    if (r.ok()) {
      // A few header bits are don't-care; damage there still decodes to the same index. A
      // window's frame is checked when its unit is decoded (kCorrupt then), and may also
      // hold such bits.
      std::string scratch;
      Result<std::string_view> window = UnitWindow(r->units[1], &scratch);
      if (!window.ok()) {
        EXPECT_EQ(window.status().code(), Code::kCorrupt);
        continue;
      }
      EXPECT_EQ(*SerializeLayerIndexBody(*r), *SerializeLayerIndexBody(SampleIndex()))
          << "damage at " << pos << " went unnoticed";
      continue;
    }
    EXPECT_EQ(r.status().code(), Code::kCorrupt);
  }
  std::string garbage(10000, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  EXPECT_EQ(LayerIndex::Deserialize(garbage).status().code(), Code::kCorrupt);
  EXPECT_EQ(LayerIndex::Deserialize("IMGFSLIX\x01\xff\xff\xff\xff\x0f").status().code(),
            Code::kCorrupt);
}

TEST(LayerIndexTest, InconsistentIndexesAreRejected) {
  auto rejects = [](LayerIndex index) {
    Result<LayerIndex> r = LayerIndex::Deserialize(index.Serialize());
    return !r.ok() && r.status().code() == Code::kCorrupt;
  };
  LayerIndex missing_unit = SampleIndex();
  missing_unit.entries[1].chunks[1].unit = 9;
  EXPECT_TRUE(rejects(missing_unit));
  LayerIndex outside_unit = SampleIndex();
  outside_unit.entries[1].chunks[1].unit_offset = 4000;
  EXPECT_TRUE(rejects(outside_unit));
  LayerIndex gap = SampleIndex();
  gap.entries[1].chunks[1].file_offset = 601;
  EXPECT_TRUE(rejects(gap));
  LayerIndex short_cover = SampleIndex();
  short_cover.entries[1].size = 2000;
  EXPECT_TRUE(rejects(short_cover));
  LayerIndex bad_sha = SampleIndex();
  bad_sha.units[0].sha256 = "md5:abc";
  EXPECT_TRUE(rejects(bad_sha));
  LayerIndex outside_blob = SampleIndex();
  outside_blob.units[1].clen = 2002;
  EXPECT_TRUE(rejects(outside_blob));
  LayerIndex bad_diff_id = SampleIndex();
  bad_diff_id.diff_id = "sha256:not-hex";
  EXPECT_TRUE(rejects(bad_diff_id));
  LayerIndex bad_nsec = SampleIndex();
  bad_nsec.entries[1].mtime_nsec = 1000000000;
  EXPECT_TRUE(rejects(bad_nsec));
}

TEST(CleanPathTest, Cleans) {
  EXPECT_EQ(*CleanPath("./usr//bin/"), "usr/bin");
  EXPECT_EQ(*CleanPath("/etc/passwd"), "etc/passwd");
  EXPECT_EQ(*CleanPath("."), "");
  EXPECT_EQ(*CleanPath("./"), "");
  EXPECT_EQ(*CleanPath(""), "");
  EXPECT_EQ(*CleanPath("a/./b/../c"), "a/c");
  EXPECT_EQ(*CleanPath("a/.."), "");
  EXPECT_EQ(CleanPath("..").status().code(), Code::kCorrupt);
  EXPECT_EQ(CleanPath("a/../../b").status().code(), Code::kCorrupt);
  EXPECT_EQ(CleanPath(std::string("a\0b", 3)).status().code(), Code::kCorrupt);
  // Docker's filepath.Clean: ".." cannot climb above a leading "/".
  EXPECT_EQ(*CleanPath("/../../etc/passwd"), "etc/passwd");
  EXPECT_EQ(*CleanPath("/.."), "");
}

TEST(CleanPathTest, EnforcesNameMaxAndPathMaxNamingTheEntry) {
  EXPECT_TRUE(CleanPath(std::string(255, 'n')).ok());
  Result<std::string> component = CleanPath("dir/" + std::string(256, 'n'));
  EXPECT_EQ(component.status().code(), Code::kCorrupt);
  EXPECT_THAT(component.status().message(), ::testing::HasSubstr("NAME_MAX"));
  EXPECT_THAT(component.status().message(), ::testing::HasSubstr("dir/nnn"));
  std::string longest;
  while (longest.size() < 4095) longest += longest.empty() ? "p" : "/p";
  longest.resize(4095);
  EXPECT_TRUE(CleanPath(longest).ok());
  Result<std::string> path = CleanPath(longest + "p");
  EXPECT_EQ(path.status().code(), Code::kCorrupt);
  EXPECT_THAT(path.status().message(), ::testing::HasSubstr("PATH_MAX"));
  EXPECT_LT(path.status().message().size(), 300u);
}

TEST(IsDroppedNameTest, DegenerateWhiteoutsAndAufsMetadata) {
  for (const char* dropped :
       {".wh.", "a/.wh..", "a/b/.wh...", ".wh..wh.plnk", ".wh..wh.plnk/1", ".wh..wh.aufs"}) {
    EXPECT_TRUE(IsDroppedName(dropped)) << dropped;
  }
  for (const char* kept :
       {".wh..wh..opq", "a/.wh..wh..opq", "a/.wh.x", "a/.wh..wh.plnk", "x.wh.", "a/wh..", ""}) {
    EXPECT_FALSE(IsDroppedName(kept)) << kept;
  }
}

TEST(ApplyWhiteoutNameTest, MarksWhiteoutsAndOpaqueDirectories) {
  Entry e;
  e.path = "etc/.wh.passwd";
  EXPECT_TRUE(ApplyWhiteoutName(&e));
  EXPECT_EQ(e.path, "etc/passwd");
  EXPECT_TRUE(e.whiteout);

  Entry top;
  top.path = ".wh.bin";
  EXPECT_TRUE(ApplyWhiteoutName(&top));
  EXPECT_EQ(top.path, "bin");

  Entry opq;
  opq.path = "var/lib/.wh..wh..opq";
  EXPECT_TRUE(ApplyWhiteoutName(&opq));
  EXPECT_EQ(opq.path, "var/lib");
  EXPECT_TRUE(opq.opaque);
  EXPECT_FALSE(opq.whiteout);

  Entry root_opq;
  root_opq.path = ".wh..wh..opq";
  EXPECT_TRUE(ApplyWhiteoutName(&root_opq));
  EXPECT_EQ(root_opq.path, "");
  EXPECT_TRUE(root_opq.opaque);

  Entry plain;
  plain.path = "etc/wh.file";
  EXPECT_FALSE(ApplyWhiteoutName(&plain));
  EXPECT_EQ(plain.path, "etc/wh.file");
  Entry dir_named_wh;
  dir_named_wh.path = ".wh.dir/file";
  EXPECT_FALSE(ApplyWhiteoutName(&dir_named_wh));
}

// The memory an index reports grows by what each entry, chunk and unit adds: their slots in
// the vectors and the strings too long to live inside their std::string.
TEST(LayerIndexMemoryTest, CountsSlotsAndLongStrings) {
  LayerIndex index;
  const uint64_t empty = LayerIndexMemoryBytes(index);
  EXPECT_GE(empty, sizeof(LayerIndex));

  Entry short_name;
  short_name.path = "etc";  // fits in the std::string itself
  index.entries.reserve(2);
  index.entries.push_back(short_name);
  const uint64_t one = LayerIndexMemoryBytes(index);
  EXPECT_EQ(one - empty, 2 * sizeof(Entry));  // the reserved capacity, nothing else

  Entry file;
  file.path = std::string(200, 'p');
  file.chunks.resize(3);
  file.chunks[1].sha256 = Sha256Digest("chunk");  // 71 bytes: on the heap
  index.entries.push_back(file);
  const uint64_t two = LayerIndexMemoryBytes(index);
  EXPECT_GE(two - one, 201 + 3 * sizeof(Chunk) + 72);
  EXPECT_LE(two - one, 2 * (201 + 3 * sizeof(Chunk) + 72));

  Unit unit;
  unit.sha256 = Sha256Digest("unit");
  unit.window = std::string(32 << 10, 'w');
  index.units.push_back(unit);
  const uint64_t three = LayerIndexMemoryBytes(index);
  EXPECT_GE(three - two, sizeof(Unit) + 72 + (32 << 10));

  // Loaded from version 5, the units hold frames of one shared record: counted once.
  index.units.push_back(unit);
  index.blob_digest = Sha256Digest("blob");
  index.format = "gzip";
  index.entries.clear();
  Result<LayerIndex> loaded = LayerIndex::Deserialize(index.Serialize());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_NE(loaded->units[0].window_record, nullptr);
  EXPECT_EQ(loaded->units[0].window_record, loaded->units[1].window_record);
  const uint64_t record = loaded->units[0].window_record->capacity();
  const uint64_t with_record = LayerIndexMemoryBytes(*loaded);
  loaded->units[0].window_record.reset();
  loaded->units[1].window_record.reset();
  EXPECT_EQ(with_record - LayerIndexMemoryBytes(*loaded), record + 1);
}

}  // namespace
}  // namespace imgfs::fs
