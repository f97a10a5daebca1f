// DiffIdHasher: the sha256 of a layer's uncompressed stream from its compressed blob fed in
// pieces of any size, for gzip of many members (eStargz), zstd frames with skippable frames
// (zstd:chunked) and tar; and its errors for blobs that end early or inflate too far.
#include "fs/layer/diff_id.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zstd.h>

#include <string>

#include "base/digest.h"
#include "tests/support/test_blobs.h"

namespace imgfs::fs {
namespace {

using test::GzipMember;
using test::RandomBytes;

// Feeds `blob` in pieces of 1, 2, 3, ... bytes (then 64 KiB), as a registry's reads come.
Result<std::string> Hash(std::string_view format, std::string_view blob,
                         uint64_t max_decoded = uint64_t{1} << 30) {
  IMGFS_ASSIGN_OR_RETURN(std::unique_ptr<DiffIdHasher> h,
                         DiffIdHasher::Create(format, max_decoded));
  size_t piece = 1;
  while (!blob.empty()) {
    size_t n = std::min(blob.size(), piece < 1000 ? piece++ : size_t{65536});
    IMGFS_RETURN_IF_ERROR(h->Feed(blob.substr(0, n)));
    blob.remove_prefix(n);
  }
  return h->Finish();
}

std::string ZstdFrame(const std::string& data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string SkippableFrame(const std::string& data) {
  std::string out = "\x50\x2a\x4d\x18";  // magic 0x184D2A50, little-endian
  for (int i = 0; i < 4; ++i) out += static_cast<char>((data.size() >> (8 * i)) & 0xff);
  return out + data;
}

TEST(DiffIdHasherTest, GzipMembersDecodeAsOneStream) {
  std::string a = RandomBytes(300000, 1), b = "tar header and text\n", c = RandomBytes(5000, 2);
  // eStargz: members one after the other, an empty member as the footer.
  std::string blob = GzipMember(a) + GzipMember(b) + GzipMember(c) + GzipMember("");
  Result<std::string> got = Hash("estargz", blob);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, Sha256Digest(a + b + c));
  EXPECT_EQ(*Hash("gzip", blob), Sha256Digest(a + b + c));
}

TEST(DiffIdHasherTest, ZstdSkippableFramesDecodeToNothing) {
  std::string a = RandomBytes(200000, 3), b = "some text, some text, some text\n";
  std::string blob = ZstdFrame(a) + ZstdFrame(b) + SkippableFrame("{\"toc\": 1}") +
                     SkippableFrame(std::string(40, 'f'));
  Result<std::string> got = Hash("zstd:chunked", blob);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, Sha256Digest(a + b));
}

TEST(DiffIdHasherTest, TarIsItsOwnStream) {
  std::string tar = RandomBytes(10000, 4);
  EXPECT_EQ(*Hash("tar", tar), Sha256Digest(tar));
}

TEST(DiffIdHasherTest, BlobsThatEndEarlyOrDoNotDecodeAreCorrupt) {
  std::string member = GzipMember(RandomBytes(10000, 5));
  Result<std::string> cut = Hash("estargz", member.substr(0, member.size() - 3));
  EXPECT_EQ(cut.status().code(), Code::kCorrupt) << cut.status().ToString();
  EXPECT_THAT(cut.status().message(), ::testing::HasSubstr("inside a gzip member"));
  Result<std::string> junk = Hash("gzip", member + "not gzip at all");
  EXPECT_EQ(junk.status().code(), Code::kCorrupt) << junk.status().ToString();
  std::string frame = ZstdFrame(RandomBytes(10000, 6));
  Result<std::string> zcut = Hash("zstd:chunked", frame.substr(0, frame.size() - 2));
  EXPECT_EQ(zcut.status().code(), Code::kCorrupt) << zcut.status().ToString();
  EXPECT_EQ(Hash("estargz", "").status().code(), Code::kCorrupt);
  EXPECT_EQ(Hash("squashfs", "x").status().code(), Code::kUnsupported);
}

TEST(DiffIdHasherTest, OutputBeyondTheLimitIsCorrupt) {
  std::string zeros(4 << 20, '\0');
  Result<std::string> bomb = Hash("gzip", GzipMember(zeros) + GzipMember(zeros), 6 << 20);
  EXPECT_EQ(bomb.status().code(), Code::kCorrupt) << bomb.status().ToString();
  EXPECT_THAT(bomb.status().message(), ::testing::HasSubstr("more than 6291456 bytes"));
  EXPECT_TRUE(Hash("gzip", GzipMember(zeros), 6 << 20).ok());
}

}  // namespace
}  // namespace imgfs::fs
