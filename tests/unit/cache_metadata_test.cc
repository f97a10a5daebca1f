// Cache metadata: references, documents and layer indexes persist, are verified, and a
// damaged record is dropped rather than returned.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "base/digest.h"
#include "cache/cache.h"
#include "cache/lmdb_env.h"
#include "cache/records.h"
#include "tests/support/files.h"

namespace imgfs::cache {
namespace {

class CacheMetadataTest : public ::testing::Test {
 protected:
  std::unique_ptr<Cache> OpenCache() {
    auto c = Cache::Open(root_);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  // Overwrites one record behind the cache's back. REQUIRES: no Cache open on root_.
  void Overwrite(Db db, const std::string& key, const std::string& value) {
    auto env = LmdbEnv::Open(root_ + "/index", root_);
    ASSERT_TRUE(env.ok()) << env.status().ToString();
    Status s = (*env)->Write([&](LmdbTxn& txn) { return txn.Put(db, key, value); });
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  test::TempDir tmp_{"cache-meta"};
  const std::string dir_ = tmp_.path();
  const std::string root_ = tmp_.Sub("cache");
};

const std::string kManifest = R"({"schemaVersion":2,"layers":[]})";
const std::string kManifestType = "application/vnd.oci.image.manifest.v1+json";

TEST_F(CacheMetadataTest, OpenCreatesTheLayout) {
  auto cache = OpenCache();
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->root(), root_);
  EXPECT_TRUE(std::filesystem::is_directory(root_ + "/blobs/sha256"));
  EXPECT_TRUE(std::filesystem::exists(root_ + "/index/data.mdb"));
  auto perms = std::filesystem::status(root_).permissions();
  EXPECT_EQ(perms & std::filesystem::perms::all, std::filesystem::perms::owner_all);
}

TEST_F(CacheMetadataTest, ReferencesDocumentsAndLayerIndexesSurviveReopen) {
  std::string digest = Sha256Digest(kManifest);
  std::string blob = Sha256Digest("layer bytes");
  const char kIndex[] = "\x00\x01binary\xffindex";
  std::string index(kIndex, sizeof(kIndex) - 1);
  {
    auto cache = OpenCache();
    ASSERT_TRUE(cache);
    ASSERT_TRUE(cache->PutReference("docker.io/library/alpine:latest", digest).ok());
    ASSERT_TRUE(cache->PutDocument(digest, kManifestType, kManifest).ok());
    ASSERT_TRUE(cache->PutLayerIndex(blob, index).ok());
  }
  auto cache = OpenCache();
  ASSERT_TRUE(cache);
  auto ref = cache->GetReference("docker.io/library/alpine:latest");
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  EXPECT_EQ(ref->manifest_digest, digest);
  EXPECT_GT(ref->fetched_unix, 1600000000);
  auto doc = cache->GetDocument(digest);
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  EXPECT_EQ(doc->media_type, kManifestType);
  EXPECT_EQ(doc->bytes, kManifest);
  auto layer = cache->GetLayerIndex(blob);
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  EXPECT_EQ(*layer, index);
}

TEST_F(CacheMetadataTest, ReferenceIsReplacedByANewerOne) {
  auto cache = OpenCache();
  ASSERT_TRUE(cache);
  ASSERT_TRUE(cache->PutReference("r:1", Sha256Digest("a")).ok());
  ASSERT_TRUE(cache->PutReference("r:1", Sha256Digest("b")).ok());
  auto ref = cache->GetReference("r:1");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->manifest_digest, Sha256Digest("b"));
}

TEST_F(CacheMetadataTest, ReferencesAreListedByPrefixAndDeleted) {
  auto cache = OpenCache();
  ASSERT_TRUE(cache);
  ASSERT_TRUE(cache->PutReference("pulled a:1", Sha256Digest("a")).ok());
  ASSERT_TRUE(cache->PutReference("pulled b:2", Sha256Digest("b")).ok());
  ASSERT_TRUE(cache->PutReference("pulle", Sha256Digest("c")).ok());    // sorts before
  ASSERT_TRUE(cache->PutReference("pulledz", Sha256Digest("d")).ok());  // sorts after
  auto list = cache->ListReferences("pulled ");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].first, "pulled a:1");
  EXPECT_EQ((*list)[0].second.manifest_digest, Sha256Digest("a"));
  EXPECT_EQ((*list)[1].first, "pulled b:2");
  ASSERT_TRUE(cache->DeleteReference("pulled a:1").ok());
  ASSERT_TRUE(cache->DeleteReference("pulled a:1").ok()) << "deleting an absent key is OK";
  EXPECT_TRUE(cache->GetReference("pulled a:1").status().IsNotFound());
  list = cache->ListReferences("pulled ");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1u);
  EXPECT_EQ(cache->ListReferences("")->size(), 3u);
}

TEST_F(CacheMetadataTest, MissingEntriesAreNotFound) {
  auto cache = OpenCache();
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->GetReference("docker.io/library/nope:1").status().code(), Code::kNotFound);
  EXPECT_EQ(cache->GetDocument(Sha256Digest("x")).status().code(), Code::kNotFound);
  EXPECT_EQ(cache->GetLayerIndex(Sha256Digest("x")).status().code(), Code::kNotFound);
}

TEST_F(CacheMetadataTest, BadInputIsRejected) {
  auto cache = OpenCache();
  ASSERT_TRUE(cache);
  EXPECT_FALSE(cache->PutReference("r:1", "sha256:short").ok());
  EXPECT_EQ(cache->PutReference("", Sha256Digest("a")).code(), Code::kInvalidArgument);
  EXPECT_EQ(cache->PutReference(std::string(4096, 'r'), Sha256Digest("a")).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(cache->PutDocument(Sha256Digest("other"), kManifestType, kManifest).code(),
            Code::kDigestMismatch);
  EXPECT_EQ(cache->GetDocument(Sha256Digest("other")).status().code(), Code::kNotFound);
  EXPECT_EQ(cache->GetDocument("md5:abc").status().code(), Code::kUnsupported);
  EXPECT_FALSE(cache->PutLayerIndex("nope", "x").ok());
}

TEST_F(CacheMetadataTest, CorruptDocumentIsDroppedAndReportedNotFound) {
  std::string digest = Sha256Digest(kManifest);
  {
    auto cache = OpenCache();
    ASSERT_TRUE(cache);
    ASSERT_TRUE(cache->PutDocument(digest, kManifestType, kManifest).ok());
  }
  std::string bad = kManifest;
  bad[3] ^= 0x20;
  Overwrite(Db::kDocs, digest,
            std::string(1, '\0') + char(kManifestType.size()) + kManifestType + bad);
  {
    auto cache = OpenCache();
    ASSERT_TRUE(cache);
    auto doc = cache->GetDocument(digest);
    ASSERT_EQ(doc.status().code(), Code::kNotFound);
    EXPECT_NE(doc.status().message().find("corrupt"), std::string::npos);
    // Dropped: the next lookup is a plain miss, and a good copy can be stored again.
    auto again = cache->GetDocument(digest);
    ASSERT_EQ(again.status().code(), Code::kNotFound);
    EXPECT_EQ(again.status().message().find("corrupt"), std::string::npos);
    ASSERT_TRUE(cache->PutDocument(digest, kManifestType, kManifest).ok());
    EXPECT_TRUE(cache->GetDocument(digest).ok());
  }
  // A record too short to hold its media type is damage too, not a crash.
  Overwrite(Db::kDocs, digest, std::string("\xff\xff", 2));
  auto cache = OpenCache();
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->GetDocument(digest).status().code(), Code::kNotFound);
}

TEST_F(CacheMetadataTest, CorruptLayerIndexAndReferenceAreDropped) {
  std::string blob = Sha256Digest("layer");
  {
    auto cache = OpenCache();
    ASSERT_TRUE(cache);
    ASSERT_TRUE(cache->PutLayerIndex(blob, "serialized index").ok());
  }
  Overwrite(Db::kLayers, std::string(DigestHex(blob)),
            std::string(DigestHex(Sha256Digest("serialized index"))) + "serialized indeX");
  Overwrite(Db::kRefs, "r:1", "short");
  auto cache = OpenCache();
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->GetLayerIndex(blob).status().code(), Code::kNotFound);
  EXPECT_EQ(cache->GetReference("r:1").status().code(), Code::kNotFound);
}

// A layer index is stored with a CRC32 of it; a record of the sha256 form earlier imgfs wrote
// is still read, and damage to either is found and dropped.
TEST_F(CacheMetadataTest, LayerIndexChecksumsOfBothFormsAreChecked) {
  std::string blob = Sha256Digest("layer");
  const std::string index = "serialized index";
  {
    auto cache = OpenCache();
    ASSERT_TRUE(cache);
    ASSERT_TRUE(cache->PutLayerIndex(blob, index).ok());
    EXPECT_EQ(*cache->GetLayerIndex(blob), index);
  }
  const std::string crc_form = EncodeLayerIndex(index);
  ASSERT_EQ(crc_form.size(), 5 + index.size());
  EXPECT_EQ(crc_form[0], '\x01');
  for (size_t i = 0; i < crc_form.size(); ++i) {
    std::string damaged = crc_form;
    damaged[i] ^= 0x10;
    EXPECT_FALSE(DecodeLayerIndex(damaged).has_value()) << i;
  }
  EXPECT_FALSE(DecodeLayerIndex(crc_form.substr(0, 4)).has_value());
  EXPECT_FALSE(DecodeLayerIndex("").has_value());

  Overwrite(Db::kLayers, std::string(DigestHex(blob)),
            std::string(DigestHex(Sha256Digest(index))) + index);
  {
    auto cache = OpenCache();
    ASSERT_TRUE(cache);
    EXPECT_EQ(*cache->GetLayerIndex(blob), index);
  }
  Overwrite(Db::kLayers, std::string(DigestHex(blob)), crc_form.substr(0, crc_form.size() - 1));
  auto cache = OpenCache();
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->GetLayerIndex(blob).status().code(), Code::kNotFound);
  // Dropped: a Put of the index is then read back whole.
  ASSERT_TRUE(cache->PutLayerIndex(blob, index).ok());
  EXPECT_EQ(*cache->GetLayerIndex(blob), index);
}

TEST_F(CacheMetadataTest, UnwritableRootIsAClearIoError) {
  std::string file = dir_ + "/plain-file";
  std::ofstream(file) << "not a directory";
  auto cache = Cache::Open(file + "/cache");
  ASSERT_FALSE(cache.ok());
  EXPECT_EQ(cache.status().code(), Code::kIoError);
  EXPECT_NE(cache.status().message().find(file), std::string::npos) << cache.status().message();
  EXPECT_EQ(Cache::Open("").status().code(), Code::kInvalidArgument);
}

TEST_F(CacheMetadataTest, TrailingSlashNamesTheSameRoot) {
  auto a = Cache::Open(root_ + "//");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ((*a)->root(), root_);
}

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old, had_ = true;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_, old_.c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(CacheDefaultRootTest, FollowsTheEnvironment) {
  {
    ScopedEnv cache("IMGFS_CACHE", "/srv/imgfs-cache");
    EXPECT_EQ(Cache::DefaultRoot(), "/srv/imgfs-cache");
  }
  ScopedEnv cache("IMGFS_CACHE", nullptr);
  ScopedEnv xdg("XDG_CACHE_HOME", "/home/u/.xdg-cache");
  ScopedEnv home("HOME", "/home/u");
  if (geteuid() == 0) {
    EXPECT_EQ(Cache::DefaultRoot(), "/var/lib/imgfs");
  } else {
    EXPECT_EQ(Cache::DefaultRoot(), "/home/u/.xdg-cache/imgfs");
    ScopedEnv no_xdg("XDG_CACHE_HOME", nullptr);
    EXPECT_EQ(Cache::DefaultRoot(), "/home/u/.cache/imgfs");
  }
}

}  // namespace
}  // namespace imgfs::cache
