// eStargz TOC -> LayerIndex. The blobs are written here, following the eStargz layout of
// containerd/stargz-snapshotter (estargz.Writer): one gzip member per chunk (the tar header
// in the member before it, padding and the next headers after the data), optional small-file
// sharing with innerOffset, the TOC tar entry in its own member, and the 51/47-byte footer.
#include "fs/layer/estargz.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "fs/layer/decode.h"
#include "fs/layer/toc.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/test_blobs.h"
#include "tests/support/toc_layer_read.h"

namespace imgfs::fs {
namespace {

using nlohmann::json;
using test::FakeBlobSource;
using test::FindEntry;
using test::GzipMember;
using test::RandomBytes;
using test::ReadEntry;
using test::TarPadding;
using ::testing::HasSubstr;

std::string Octal(uint64_t v, size_t width) {
  std::string s(width - 1, '0');
  for (size_t i = width - 1; i-- > 0 && v;) {
    s[i] = static_cast<char>('0' + (v & 7));
    v >>= 3;
  }
  return s + '\0';
}

std::string TarHeader(const std::string& name, char type, uint64_t size,
                      const std::string& link = "") {
  std::string h(512, '\0');
  h.replace(0, std::min<size_t>(name.size(), 100), name.substr(0, 100));
  h.replace(100, 8, Octal(0644, 8));
  h.replace(108, 8, Octal(0, 8));
  h.replace(116, 8, Octal(0, 8));
  h.replace(124, 12, Octal(size, 12));
  h.replace(136, 12, Octal(0, 12));
  h[156] = type;
  h.replace(157, std::min<size_t>(link.size(), 100), link.substr(0, 100));
  h.replace(257, 8,
            std::string("ustar\0"
                        "00",
                        8));
  h.replace(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  h.replace(148, 8, Octal(sum, 7) + ' ');
  return h;
}

std::string Footer(uint64_t toc_off, bool legacy) {
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(toc_off));
  std::string f = {'\x1f', '\x8b', '\x08', '\x04', 0, 0, 0, 0, 0, '\xff'};
  if (legacy) {
    f += std::string("\x16\x00", 2);
  } else {
    f += std::string("\x1a\x00", 2);
    f += std::string("SG\x16\x00", 4);
  }
  f += std::string(hex) + "STARGZ";
  f += std::string("\x01\x00\x00\xff\xff", 5);  // empty stored final block
  f += std::string(8, '\0');                    // CRC32 and ISIZE of nothing
  return f;
}

// One item of a test layer.
struct Item {
  std::string name;
  std::string type = "reg";  // reg dir symlink hardlink char block fifo
  std::string content;
  uint32_t mode = 0644;
  std::string link;
  std::map<std::string, std::string> xattrs;  // raw values
  std::string modtime;
};

// Item{} with the named fields set; avoids designated initializers, which -Wextra flags
// for every field left out.
Item MakeItem(std::string name, std::string type, std::string content, uint32_t mode,
              std::string link = "", std::map<std::string, std::string> xattrs = {},
              std::string modtime = "") {
  Item it;
  it.name = std::move(name);
  it.type = std::move(type);
  it.content = std::move(content);
  it.mode = mode;
  it.link = std::move(link);
  it.xattrs = std::move(xattrs);
  it.modtime = std::move(modtime);
  return it;
}
Item File(std::string name, std::string content, uint32_t mode = 0644) {
  return MakeItem(std::move(name), "reg", std::move(content), mode);
}

struct Blob {
  std::string bytes;
  std::string toc_json;
  std::string toc_digest;
  uint64_t toc_offset = 0;
};

std::string Base64(std::string_view in) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], k[v & 63]};
  }
  if (in.size() - i == 1) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += {k[v >> 18], k[(v >> 12) & 63], '=', '='};
  } else if (in.size() - i == 2) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
  }
  return out;
}

// Writes an eStargz blob the way estargz.Writer does.
class EstargzWriter {
 public:
  uint64_t chunk_size = 0;     // 0: one chunk per file
  bool share_members = false;  // newer writers' MinChunkSize: small files share a member
  bool legacy_footer = false;
  bool wrong_chunk_digest_for_first_file = false;

  Blob Write(const std::vector<Item>& items, const std::string& prefetch_after = "") {
    for (const Item& it : items) {
      Add(it);
      if (!prefetch_after.empty() && it.name == prefetch_after) {
        Item landmark;
        landmark.name = ".prefetch.landmark";
        landmark.content = "\x0f";
        Add(landmark, /*force_new_member=*/true);
      }
    }
    return Finish(toc_.dump(1, '\t'));
  }

  // A gzip member of arbitrary bytes, as the data of hand-made TOCs.
  void AppendMember(const std::string& data) {
    CloseMember();
    blob_ += GzipMember(data);
  }

  // Ends the data and writes `toc_json` as the TOC (for hand-made, possibly broken, TOCs).
  Blob Finish(const std::string& toc_json) {
    CloseMember();
    Blob b;
    b.toc_offset = blob_.size();
    std::string tar = TarHeader("stargz.index.json", '0', toc_json.size()) + toc_json +
                      TarPadding(toc_json.size()) + std::string(1024, '\0');
    blob_ += GzipMember(tar);
    blob_ += Footer(b.toc_offset, legacy_footer);
    b.bytes = blob_;
    b.toc_json = toc_json;
    b.toc_digest = Sha256Digest(toc_json);
    return b;
  }

 private:
  void CloseMember() {
    if (open_) blob_ += GzipMember(cur_);
    cur_.clear();
    open_ = false;
  }
  void OpenMember() {
    if (!open_) {
      cur_off_ = blob_.size();
      open_ = true;
    }
  }

  void Add(const Item& it, bool force_new_member = false) {
    json e;
    e["name"] = it.name;
    e["type"] = it.type;
    if (it.mode) e["mode"] = it.mode;
    e["uid"] = 1000;
    e["gid"] = 100;
    if (!it.modtime.empty()) e["modtime"] = it.modtime;
    if (!it.link.empty()) e["linkName"] = it.link;
    if (it.type == "char" || it.type == "block") {
      e["devMajor"] = 1;
      e["devMinor"] = 3;
    }
    if (!it.xattrs.empty()) {
      for (auto& [k, v] : it.xattrs) e["xattrs"][k] = Base64(v);
    }
    char tar_type = it.type == "reg"        ? '0'
                    : it.type == "dir"      ? '5'
                    : it.type == "symlink"  ? '2'
                    : it.type == "hardlink" ? '1'
                    : it.type == "char"     ? '3'
                    : it.type == "block"    ? '4'
                                            : '6';
    OpenMember();
    cur_ += TarHeader(it.name, tar_type, it.type == "reg" ? it.content.size() : 0, it.link);
    if (it.type != "reg" || it.content.empty()) {
      if (it.type == "reg") e["size"] = 0;
      toc_["entries"].push_back(e);
      return;
    }
    e["size"] = it.content.size();
    e["digest"] = Sha256Digest(it.content);
    uint64_t written = 0;
    while (written < it.content.size()) {
      uint64_t n = it.content.size() - written;
      if (chunk_size != 0 && n > chunk_size) {
        n = chunk_size;
        e["chunkSize"] = n;
      }
      if (share_members && !force_new_member && cur_off_ != 0 && open_) {
        e["offset"] = cur_off_;
        e["innerOffset"] = cur_.size();
      } else {
        CloseMember();
        OpenMember();
        e["offset"] = cur_off_;
      }
      if (written != 0) e["chunkOffset"] = written;
      std::string chunk = it.content.substr(written, n);
      e["chunkDigest"] = Sha256Digest(chunk);
      if (wrong_chunk_digest_for_first_file && toc_["entries"].empty()) {
        e["chunkDigest"] = Sha256Digest(chunk + "x");
      }
      cur_ += chunk;
      toc_["entries"].push_back(e);
      written += n;
      e = json::object();
      e["name"] = it.name;
      e["type"] = "chunk";
    }
    cur_ += TarPadding(it.content.size());
  }

  std::string blob_;
  std::string cur_;
  uint64_t cur_off_ = 0;
  bool open_ = false;
  json toc_ = json{{"version", 1}, {"entries", json::array()}};
};

LayerDescriptor Descriptor(const Blob& b) {
  LayerDescriptor d;
  d.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  d.digest = Sha256Digest(b.bytes);
  d.size = b.bytes.size();
  d.annotations[std::string(kEstargzTocDigestAnnotation)] = b.toc_digest;
  return d;
}

std::vector<Item> SampleItems() {
  std::vector<Item> items;
  items.push_back(MakeItem("./", "dir", "", 0755));
  items.push_back(MakeItem("etc/", "dir", "", 0755));
  items.push_back(
      MakeItem("etc/hosts", "reg", "127.0.0.1 localhost\n", 0644, "", {}, "2021-03-04T05:06:07Z"));
  items.push_back(MakeItem("bin/", "dir", "", 0755));
  items.push_back(File("bin/big", RandomBytes(2500, 1), 04755));
  items.push_back(MakeItem("bin/link", "symlink", "", 0777, "big"));
  items.push_back(MakeItem("bin/hard", "hardlink", "", 0644, "./bin/big"));
  items.push_back(MakeItem("dev/null", "char", "", 0666));
  items.push_back(MakeItem("run/fifo", "fifo", "", 0600));
  items.push_back(File("etc/empty", ""));
  items.push_back(
      MakeItem("etc/cap", "reg", "capped", 0644, "",
               {{"security.capability", std::string("\x01\x00\x00\x02", 4)}, {"user.note", "hi"}}));
  items.push_back(File("old/.wh.gone", ""));
  items.push_back(File("opq/.wh..wh..opq", ""));
  items.push_back(File("usr/share/doc", std::string(5000, 'd')));
  return items;
}

TEST(EstargzTest, TocBecomesEntriesInOrderWithChunksAndUnits) {
  EstargzWriter w;
  w.chunk_size = 1000;
  Blob b = w.Write(SampleItems(), /*prefetch_after=*/"etc/hosts");
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  auto toc = BuildEstargzIndex(Descriptor(b), &source);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(source.requests(), 1) << "a small layer's TOC comes with the footer";
  const LayerIndex& index = *toc;
  EXPECT_EQ(index.format, "estargz");
  EXPECT_EQ(index.blob_size, b.bytes.size());
  EXPECT_EQ(index.blob_digest, Sha256Digest(b.bytes));

  std::vector<std::string> paths;
  for (const Entry& e : index.entries) paths.push_back(e.path);
  EXPECT_THAT(paths, ::testing::ElementsAre("", "etc", "etc/hosts", "bin", "bin/big", "bin/link",
                                            "bin/hard", "dev/null", "run/fifo", "etc/empty",
                                            "etc/cap", "old/gone", "opq", "usr/share/doc"));
  EXPECT_EQ(FindEntry(index, ".prefetch.landmark"), nullptr);

  const Entry* hosts = FindEntry(index, "etc/hosts");
  EXPECT_EQ(hosts->type, EntryType::kRegular);
  EXPECT_EQ(hosts->mode, 0644u);
  EXPECT_EQ(hosts->uid, 1000u);
  EXPECT_EQ(hosts->gid, 100u);
  EXPECT_EQ(hosts->mtime_sec, 1614834367);
  EXPECT_EQ(hosts->size, 20u);
  EXPECT_EQ(FindEntry(index, "etc")->type, EntryType::kDirectory);

  const Entry* big = FindEntry(index, "bin/big");
  EXPECT_EQ(big->mode, 04755u);
  ASSERT_EQ(big->chunks.size(), 3u);
  EXPECT_EQ(big->chunks[0].file_offset, 0u);
  EXPECT_EQ(big->chunks[1].file_offset, 1000u);
  EXPECT_EQ(big->chunks[2].file_offset, 2000u);
  EXPECT_EQ(big->chunks[2].length, 500u);
  EXPECT_NE(big->chunks[0].unit, big->chunks[1].unit);

  EXPECT_EQ(FindEntry(index, "bin/link")->type, EntryType::kSymlink);
  EXPECT_EQ(FindEntry(index, "bin/link")->link_target, "big");
  EXPECT_EQ(FindEntry(index, "bin/hard")->type, EntryType::kHardlink);
  EXPECT_EQ(FindEntry(index, "bin/hard")->link_target, "bin/big");
  const Entry* null_dev = FindEntry(index, "dev/null");
  EXPECT_EQ(null_dev->type, EntryType::kCharDevice);
  EXPECT_EQ(null_dev->dev_major, 1u);
  EXPECT_EQ(null_dev->dev_minor, 3u);
  EXPECT_EQ(FindEntry(index, "run/fifo")->type, EntryType::kFifo);
  EXPECT_TRUE(FindEntry(index, "etc/empty")->chunks.empty());
  EXPECT_THAT(FindEntry(index, "etc/cap")->xattrs,
              ::testing::ElementsAre(std::make_pair(std::string("security.capability"),
                                                    std::string("\x01\x00\x00\x02", 4)),
                                     std::make_pair(std::string("user.note"), std::string("hi"))));
  EXPECT_TRUE(FindEntry(index, "old/gone")->whiteout);
  EXPECT_TRUE(FindEntry(index, "opq")->opaque);

  // Units: one gzip member per chunk, ranges disjoint, inside the data region, no digest of
  // the compressed range (verified after decode), one check per chunk.
  size_t data_chunks = 0;
  for (const Entry& e : index.entries) data_chunks += e.chunks.size();
  EXPECT_EQ(index.units.size(), data_chunks);
  for (size_t u = 0; u < index.units.size(); ++u) {
    const Unit& unit = index.units[u];
    EXPECT_EQ(unit.codec, UnitCodec::kGzipMember);
    EXPECT_TRUE(unit.sha256.empty());
    EXPECT_LE(unit.coff + unit.clen, b.toc_offset);
    EXPECT_EQ(UnitChecks(index)[u].size(), 1u);
  }
  // The landmark follows etc/hosts: the prioritized region ends where its member starts.
  EXPECT_GT(toc->prefetch_end, index.units[hosts->chunks[0].unit].coff);
  EXPECT_LE(toc->prefetch_end, index.units[big->chunks[0].unit].coff);

  std::vector<Item> items = SampleItems();
  for (const Item& it : items) {
    if (it.type != "reg" || it.name.find(".wh.") != std::string::npos) continue;
    const Entry* e = FindEntry(index, it.name);
    ASSERT_NE(e, nullptr) << it.name;
    EXPECT_EQ(ReadEntry(*toc, b.bytes, *e), it.content) << it.name;
  }
}

TEST(EstargzTest, BuildEstargzIndexReturnsTheSameIndex) {
  EstargzWriter w;
  Blob b = w.Write(SampleItems());
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  auto index = BuildEstargzIndex(Descriptor(b), &source);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->entries.size(), SampleItems().size());
  EXPECT_EQ(index->format, "estargz");
  EXPECT_FALSE(index->units.empty());
}

TEST(EstargzTest, ChunkDigestsSurviveTheStoredIndex) {
  EstargzWriter w;
  w.chunk_size = 1000;
  Blob b = w.Write(SampleItems());
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  auto toc = BuildEstargzIndex(Descriptor(b), &source);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  auto back = LayerIndex::Deserialize(toc->Serialize());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  auto want = UnitChecks(*toc);
  auto got = UnitChecks(*back);
  ASSERT_EQ(got.size(), want.size());
  for (size_t u = 0; u < want.size(); ++u) {
    ASSERT_FALSE(want[u].empty()) << "unit " << u << " has no chunk digest";
    ASSERT_EQ(got[u].size(), want[u].size());
    for (size_t k = 0; k < want[u].size(); ++k) {
      EXPECT_EQ(got[u][k].sha256, want[u][k].sha256);
      EXPECT_EQ(got[u][k].unit_offset, want[u][k].unit_offset);
      EXPECT_EQ(got[u][k].length, want[u][k].length);
    }
  }
}

TEST(EstargzTest, SmallFilesSharingOneMemberUseInnerOffset) {
  EstargzWriter w;
  w.share_members = true;
  std::vector<Item> items;
  items.push_back(File("a", "first file\n"));
  items.push_back(File("b", "second file, a bit longer\n"));
  items.push_back(File("c", RandomBytes(3000, 7)));
  Blob b = w.Write(items);
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  auto toc = BuildEstargzIndex(Descriptor(b), &source);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  ASSERT_EQ(toc->units.size(), 1u);
  EXPECT_EQ(UnitChecks(*toc)[0].size(), 3u);
  const Entry* fb = FindEntry(*toc, "b");
  EXPECT_EQ(fb->chunks[0].unit, 0u);
  EXPECT_GT(fb->chunks[0].unit_offset, 512u) << "a tar header precedes b's data";
  for (const Item& it : items) {
    EXPECT_EQ(ReadEntry(*toc, b.bytes, *FindEntry(*toc, it.name)), it.content) << it.name;
  }
}

TEST(EstargzTest, LegacyStargzFooterOf47Bytes) {
  EstargzWriter w;
  w.legacy_footer = true;
  Blob b = w.Write(SampleItems());
  uint64_t footer_size = 0;
  auto off = ParseEstargzFooter(b.bytes, &footer_size);
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(footer_size, 47u);
  EXPECT_EQ(*off, b.toc_offset);
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  auto toc = BuildEstargzIndex(Descriptor(b), &source);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(ReadEntry(*toc, b.bytes, *FindEntry(*toc, "usr/share/doc")), std::string(5000, 'd'));
}

TEST(EstargzTest, FooterOf51Bytes) {
  EstargzWriter w;
  Blob b = w.Write(SampleItems());
  uint64_t footer_size = 0;
  auto off = ParseEstargzFooter(b.bytes, &footer_size);
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(footer_size, 51u);
  EXPECT_EQ(*off, b.toc_offset);
}

TEST(EstargzTest, TocDigestMismatchIsRefused) {
  EstargzWriter w;
  Blob b = w.Write(SampleItems());
  LayerDescriptor d = Descriptor(b);
  d.annotations[std::string(kEstargzTocDigestAnnotation)] = Sha256Digest("another toc");
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  auto toc = BuildEstargzIndex(d, &source);
  ASSERT_FALSE(toc.ok());
  EXPECT_EQ(toc.status().code(), Code::kDigestMismatch);
  EXPECT_THAT(toc.status().message(),
              HasSubstr("TOC of layer " + d.digest + " does not match its annotation"));
}

TEST(EstargzTest, LayerWithoutAnnotationIsNotTrusted) {
  EstargzWriter w;
  Blob b = w.Write(SampleItems());
  LayerDescriptor d = Descriptor(b);
  d.annotations.clear();
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  auto toc = BuildEstargzIndex(d, &source);
  ASSERT_FALSE(toc.ok());
  EXPECT_EQ(toc.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(source.requests(), 0);
}

TEST(EstargzTest, LargeTocIsFetchedWithASecondRequest) {
  EstargzWriter w;
  std::vector<Item> items = SampleItems();
  // Xattrs of incompressible bytes (each within the 64 KiB a value may have) make the
  // compressed TOC larger than the first tail read.
  std::map<std::string, std::string> xattrs;
  for (int i = 0; i < 12; ++i)
    xattrs["user.big" + std::to_string(i)] = RandomBytes(60 << 10, 3 + i);
  items.push_back(MakeItem("etc/blob-xattr", "reg", "x", 0644, "", xattrs));
  Blob b = w.Write(items);
  ASSERT_GT(b.bytes.size() - b.toc_offset, (512u << 10) + 51);
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  auto toc = BuildEstargzIndex(Descriptor(b), &source);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(source.requests(), 2);
  const Entry* e = FindEntry(*toc, "etc/blob-xattr");
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->xattrs.size(), 12u);
  EXPECT_EQ(e->xattrs.at(0), std::make_pair(std::string("user.big0"), RandomBytes(60 << 10, 3)));
  EXPECT_EQ(ReadEntry(*toc, b.bytes, *e), "x");
}

TEST(EstargzTest, ChunkNotMatchingItsDigestFailsVerification) {
  EstargzWriter w;
  w.wrong_chunk_digest_for_first_file = true;
  std::vector<Item> items = {File("f", "payload")};
  Blob b = w.Write(items);
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  auto toc = BuildEstargzIndex(Descriptor(b), &source);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  const Unit& u = toc->units.at(0);
  auto decoded = DecodeUnit(u, std::string_view(b.bytes).substr(u.coff, u.clen));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  Status s = VerifyDecodedUnit(UnitChecks(*toc)[0], *decoded);
  EXPECT_EQ(s.code(), Code::kDigestMismatch) << s.ToString();
}

TEST(EstargzTest, VerifyDecodedUnitRejectsShortOrAlteredBytes) {
  std::vector<ChunkCheck> checks = {{0, 5, Sha256Digest("hello")}, {10, 5, Sha256Digest("world")}};
  EXPECT_TRUE(VerifyDecodedUnit(checks, "hello.....world").ok());
  EXPECT_EQ(VerifyDecodedUnit(checks, "hello.....worle").code(), Code::kDigestMismatch);
  EXPECT_EQ(VerifyDecodedUnit(checks, "hello.....wor").code(), Code::kCorrupt);
}

TEST(EstargzTest, SourceErrorsArePassedOn) {
  EstargzWriter w;
  Blob b = w.Write(SampleItems());
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  source.FailWith(Status::Unavailable("registry said 503"));
  auto toc = BuildEstargzIndex(Descriptor(b), &source);
  ASSERT_FALSE(toc.ok());
  EXPECT_EQ(toc.status().code(), Code::kUnavailable);
  EXPECT_THAT(toc.status().message(), HasSubstr("503"));
}

TEST(EstargzTest, GarbageFooterIsCorrupt) {
  std::string blob(4096, 'z');
  Blob b;
  b.bytes = blob;
  b.toc_digest = Sha256Digest("x");
  FakeBlobSource source(blob, FakeBlobSource::Serve::kAnyDigest);
  auto toc = BuildEstargzIndex(Descriptor(b), &source);
  ASSERT_FALSE(toc.ok());
  EXPECT_EQ(toc.status().code(), Code::kCorrupt);
  EXPECT_THAT(toc.status().message(), HasSubstr("footer"));

  Blob tiny;
  tiny.bytes = "abc";
  tiny.toc_digest = Sha256Digest("x");
  FakeBlobSource tiny_source(tiny.bytes, FakeBlobSource::Serve::kAnyDigest);
  EXPECT_EQ(BuildEstargzIndex(Descriptor(tiny), &tiny_source).status().code(), Code::kCorrupt);
}

TEST(EstargzTest, FooterPointingOutsideTheBlobIsCorrupt) {
  EstargzWriter w;
  Blob b = w.Write(SampleItems());
  std::string bytes = b.bytes.substr(0, b.bytes.size() - 51) + Footer(1ull << 40, false);
  Blob bad = b;
  bad.bytes = bytes;
  FakeBlobSource source(bytes, FakeBlobSource::Serve::kAnyDigest);
  auto toc = BuildEstargzIndex(Descriptor(bad), &source);
  ASSERT_FALSE(toc.ok());
  EXPECT_EQ(toc.status().code(), Code::kCorrupt);
}

// A blob with one real member of data at offset 0 and the given TOC JSON.
Blob BlobWithToc(const std::string& toc_json) {
  EstargzWriter w;
  w.AppendMember(std::string(100, 'q'));
  return w.Finish(toc_json);
}

Status IndexStatusOf(const std::string& toc_json) {
  Blob b = BlobWithToc(toc_json);
  FakeBlobSource source(b.bytes, FakeBlobSource::Serve::kAnyDigest);
  return BuildEstargzIndex(Descriptor(b), &source).status();
}

TEST(EstargzTest, MalformedTocsAreCorrupt) {
  const std::string digest = Sha256Digest("x");
  const std::vector<std::string> bad = {
      "not json",
      "[]",
      R"({"version":1})",
      R"({"version":1,"entries":{}})",
      R"({"version":1,"entries":[42]})",
      R"({"version":1,"entries":[{"name":"a","type":"chunk","offset":1,"chunkDigest":")" + digest +
          R"("}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","size":-5}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","size":1.5}]})",
      R"({"version":1,"entries":[{"name":"a","type":"weird"}]})",
      R"({"version":1,"entries":[{"name":"../../etc/passwd","type":"reg"}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":999999,"chunkDigest":")" +
          digest + R"("}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":0}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":0,"chunkDigest":"md5:1"}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":0,"chunkSize":4,"chunkDigest":")" +
          digest +
          R"("},{"type":"chunk","offset":0,"chunkOffset":2,"chunkSize":6,"chunkDigest":")" +
          digest + R"("}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":0,"chunkSize":4,"chunkDigest":")" +
          digest + R"("}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":0,"chunkSize":40,"chunkDigest":")" +
          digest + R"("}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","mode":"0644"}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","xattrs":{"user.x":"!!!"}}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","modtime":"yesterday"}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","uid":4294967296}]})",
      R"({"version":1,"entries":[{"name":"a","type":"hardlink","linkName":"../x"}]})",
      R"({"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":0,"innerOffset":0,"chunkSize":5,"chunkDigest":")" +
          digest +
          R"("},{"type":"chunk","offset":0,"innerOffset":2,"chunkOffset":5,"chunkDigest":")" +
          digest + R"("}]})",
  };
  for (const std::string& json_text : bad) {
    Status s = IndexStatusOf(json_text);
    EXPECT_EQ(s.code(), Code::kCorrupt) << json_text << " -> " << s.ToString();
    EXPECT_FALSE(s.message().empty());
  }
  EXPECT_EQ(IndexStatusOf(R"({"version":2,"entries":[]})").code(), Code::kUnsupported);
}

TEST(EstargzTest, HugeChunkIsRefusedNotAllocated) {
  const std::string digest = Sha256Digest("x");
  std::string json_text =
      R"({"version":1,"entries":[{"name":"a","type":"reg","size":9000000000000,"offset":0,"chunkDigest":")" +
      digest + R"("}]})";
  Status s = IndexStatusOf(json_text);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kUnsupported) << s.ToString();
}

TEST(EstargzTest, EmptyTocGivesAnEmptyIndex) {
  auto s = IndexStatusOf(R"({"version":1,"entries":[]})");
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(Rfc3339Test, ParsesUtcOffsetsAndFractions) {
  auto t = ParseRfc3339("2021-03-04T05:06:07Z");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->first, 1614834367);
  EXPECT_EQ(t->second, 0u);
  t = ParseRfc3339("2021-03-04T06:06:07.25+01:00");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->first, 1614834367);
  EXPECT_EQ(t->second, 250000000u);
  t = ParseRfc3339("1969-12-31T23:59:59.123456789123Z");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->first, -1);
  EXPECT_EQ(t->second, 123456789u);
  for (const char* bad : {"", "2021-03-04", "2021-13-04T05:06:07Z", "2021-03-04T05:06:07",
                          "2021-03-04T05:06:07+0100", "2021-02-30T00:00:00Z x"}) {
    EXPECT_EQ(ParseRfc3339(bad).status().code(), Code::kCorrupt) << bad;
  }
}

}  // namespace
}  // namespace imgfs::fs
