#include "fs/layer/decode.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <tuple>

#include "base/digest.h"
#include "fs/layer/stream_index.h"
#include "tests/support/test_blobs.h"

namespace imgfs::fs {
namespace {

using test::GzipMember;

std::string Zstd(std::string_view data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  out.resize(ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3));
  return out;
}

std::string Text(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  static const char* kWords[] = {"alpha ", "beta ", "gamma\n", "delta ", "0x1f8b "};
  std::string s;
  while (s.size() < n) s += kWords[rng() % 5];
  s.resize(n);
  return s;
}

Unit MakeUnit(UnitCodec codec, std::string_view compressed, uint64_t ulen) {
  Unit u;
  u.codec = codec;
  u.clen = compressed.size();
  u.sha256 = Sha256Digest(compressed);
  u.ulen = ulen;
  u.at_member_start = codec == UnitCodec::kZran;
  return u;
}

TEST(DecodeUnitTest, Raw) {
  Unit u = MakeUnit(UnitCodec::kRaw, "hello", 5);
  EXPECT_EQ(*DecodeUnit(u, "hello"), "hello");
  u.ulen = 6;
  EXPECT_EQ(DecodeUnit(u, "hello").status().code(), Code::kCorrupt);
}

TEST(DecodeUnitTest, GzipMemberAndFollowingMembers) {
  std::string a = Text(100000, 1), b = Text(50000, 2);
  std::string one = GzipMember(a);
  EXPECT_EQ(*DecodeUnit(MakeUnit(UnitCodec::kGzipMember, one, a.size()), one), a);
  // A prefix of the member's output ("until ulen bytes are out").
  EXPECT_EQ(*DecodeUnit(MakeUnit(UnitCodec::kGzipMember, one, 1000), one), a.substr(0, 1000));
  // Across a member end into the next member.
  std::string two = one + GzipMember(b);
  EXPECT_EQ(*DecodeUnit(MakeUnit(UnitCodec::kGzipMember, two, a.size() + 10), two),
            a + b.substr(0, 10));
  // More than the data holds.
  EXPECT_EQ(DecodeUnit(MakeUnit(UnitCodec::kGzipMember, one, a.size() + 1), one).status().code(),
            Code::kCorrupt);
  // Truncated.
  std::string cut = one.substr(0, one.size() / 2);
  EXPECT_EQ(DecodeUnit(MakeUnit(UnitCodec::kGzipMember, cut, a.size()), cut).status().code(),
            Code::kCorrupt);
  // Not gzip at all.
  std::string junk(100, 'j');
  EXPECT_EQ(DecodeUnit(MakeUnit(UnitCodec::kGzipMember, junk, 10), junk).status().code(),
            Code::kCorrupt);
}

// eStargz units are whole members: decoded member by member (libdeflate), empty members and
// zero padding after the last one included; a damaged member in the middle still fails.
TEST(DecodeUnitTest, UnitOfWholeGzipMembers) {
  std::string a = Text(300000, 6), b = Text(7, 7), c = Text(65536, 8);
  std::string members = GzipMember(a) + GzipMember("") + GzipMember(b) + GzipMember(c);
  Unit u = MakeUnit(UnitCodec::kGzipMember, members, a.size() + b.size() + c.size());
  EXPECT_EQ(*DecodeUnit(u, members), a + b + c);
  EXPECT_EQ(*DecodeUnitChecked(u, members), a + b + c);
  std::string padded = members + std::string(512, '\0');
  Unit up = MakeUnit(UnitCodec::kGzipMember, padded, a.size() + b.size() + c.size());
  EXPECT_EQ(*DecodeUnitChecked(up, padded), a + b + c);
  std::string bad = members;
  bad[GzipMember(a).size() / 2] ^= 0x01;
  EXPECT_FALSE(DecodeUnitChecked(u, bad).ok());
  EXPECT_EQ(
      DecodeUnit(MakeUnit(UnitCodec::kGzipMember, members, u.ulen + 1), members).status().code(),
      Code::kCorrupt);
}

TEST(DecodeUnitTest, ZstdFrames) {
  std::string a = Text(200000, 3), b = Text(3000, 4);
  std::string frames = Zstd(a) + Zstd(b);
  EXPECT_EQ(*DecodeUnit(MakeUnit(UnitCodec::kZstdFrame, frames, a.size() + b.size()), frames),
            a + b);
  EXPECT_EQ(*DecodeUnit(MakeUnit(UnitCodec::kZstdFrame, frames, 10), frames), a.substr(0, 10));
  EXPECT_EQ(DecodeUnit(MakeUnit(UnitCodec::kZstdFrame, frames, a.size() + b.size() + 1), frames)
                .status()
                .code(),
            Code::kCorrupt);
  std::string cut = frames.substr(0, frames.size() / 3);
  EXPECT_EQ(DecodeUnit(MakeUnit(UnitCodec::kZstdFrame, cut, a.size()), cut).status().code(),
            Code::kCorrupt);
}

std::string ZstdWithChecksum(std::string_view data) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(data.size()), '\0');
  out.resize(ZSTD_compress2(cctx, out.data(), out.size(), data.data(), data.size()));
  ZSTD_freeCCtx(cctx);
  return out;
}

// Bytes a store read trusts are checked by their own checksum: every damaged byte fails.
TEST(DecodeUnitTest, CheckedDecodeCatchesAnyDamagedByteOfAGzipMemberOrChecksummedFrame) {
  std::string a = Text(20000, 5);
  std::string gz = GzipMember(a);
  std::string zs = ZstdWithChecksum(a);
  Unit gu = MakeUnit(UnitCodec::kGzipMember, gz, a.size());
  Unit zu = MakeUnit(UnitCodec::kZstdFrame, zs, a.size());
  ASSERT_TRUE(DecodeChecksItself(gu, gz));
  ASSERT_TRUE(DecodeChecksItself(zu, zs));
  EXPECT_FALSE(DecodeChecksItself(zu, Zstd(a))) << "a frame written without a checksum";
  EXPECT_FALSE(DecodeChecksItself(MakeUnit(UnitCodec::kZran, gz, a.size()), gz));
  EXPECT_FALSE(DecodeChecksItself(MakeUnit(UnitCodec::kRaw, a, a.size()), a));
  EXPECT_EQ(*DecodeUnitChecked(gu, gz), a);
  EXPECT_EQ(*DecodeUnitChecked(zu, zs), a);
  EXPECT_EQ(DecodeUnitChecked(zu, Zstd(a)).status().code(), Code::kInternal);
  // Every byte after the gzip header (flags and mtime are not covered) and of the frame.
  for (auto [unit, bytes, from] : {std::tuple{gu, gz, size_t{10}}, std::tuple{zu, zs, size_t{0}}}) {
    for (size_t i = from; i < bytes.size(); ++i) {
      std::string bad = bytes;
      bad[i] ^= 0x10;
      Result<std::string> r = DecodeUnitChecked(unit, bad);
      // (A damaged frame header that no longer announces a checksum is kInternal here; the
      // reader then checks the unit against its chunk digests.)
      EXPECT_TRUE(!r.ok() || *r == a) << "byte " << i << " of " << bytes.size();
    }
  }
  // A unit shorter than its member: the decode that stops at ulen would miss the trailer.
  Unit shorter = MakeUnit(UnitCodec::kGzipMember, gz, a.size() - 1);
  EXPECT_EQ(DecodeUnitChecked(shorter, gz).status().code(), Code::kCorrupt);
  EXPECT_TRUE(DecodeUnit(shorter, gz).ok());
}

TEST(DecodeUnitTest, WrongInputLengthIsRefused) {
  Unit u = MakeUnit(UnitCodec::kRaw, "abc", 3);
  EXPECT_FALSE(DecodeUnit(u, "ab").ok());
}

// zran units cut by the indexer decode on their own; damaged ones fail cleanly.
TEST(DecodeUnitTest, ZranUnitsFromTheIndexer) {
  // A tar of one file big enough for several checkpoints.
  std::string content = Text(3 << 20, 5);
  std::string header(512, '\0');
  std::memcpy(header.data(), "big", 3);
  std::snprintf(&header[100], 8, "%07o", 0644);
  std::snprintf(&header[108], 8, "%07o", 0);
  std::snprintf(&header[116], 8, "%07o", 0);
  std::snprintf(&header[124], 12, "%011llo", static_cast<unsigned long long>(content.size()));
  std::snprintf(&header[136], 12, "%011o", 0);
  header[156] = '0';
  std::memcpy(&header[257],
              "ustar\0"
              "00",
              8);
  std::memset(&header[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : header) sum += c;
  std::snprintf(&header[148], 8, "%06o", sum);
  std::string tar = header + content + std::string(1024, '\0');
  std::string blob = GzipMember(tar, 9);

  StreamIndexOptions options;
  options.span = 128 << 10;
  StreamIndexer indexer(options);
  ASSERT_TRUE(indexer.Feed(blob).ok());
  Result<LayerIndex> index = indexer.Finish();
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  // Text compresses into long deflate blocks, and checkpoints sit only at block ends.
  ASSERT_GT(index->units.size(), 4u);
  std::string all;
  for (const Unit& u : index->units) {
    Result<std::string> out = DecodeUnit(u, std::string_view(blob).substr(u.coff, u.clen));
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    all += *out;
  }
  EXPECT_TRUE(all == tar);

  std::mt19937 rng(11);
  for (int i = 0; i < 300; ++i) {
    const Unit& u = index->units[rng() % index->units.size()];
    std::string damaged = blob.substr(u.coff, u.clen);
    damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
    Result<std::string> out = DecodeUnit(u, damaged);
    // Damage may go unnoticed by inflate (the caller checks the digest first); it must
    // never crash or give the wrong length.
    if (out.ok()) {
      EXPECT_EQ(out->size(), u.ulen);
    } else {
      EXPECT_EQ(out.status().code(), Code::kCorrupt);
    }
  }
}

}  // namespace
}  // namespace imgfs::fs
