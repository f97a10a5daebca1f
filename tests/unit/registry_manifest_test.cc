#include "registry/manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace imgfs::registry {
namespace {

std::string D(char c) { return "sha256:" + std::string(64, c); }

std::string OciManifest() {
  return R"({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": ")" +
         D('c') +
         R"(", "size": 1234},
    "layers": [
      {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ")" +
         D('1') +
         R"(", "size": 100,
       "annotations": {"containerd.io/snapshot/stargz/toc.digest": ")" +
         D('t') + R"("}},
      {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": ")" +
         D('2') +
         R"(", "size": 18446744073709551615}
    ],
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
  })";
}

std::string DockerManifest() {
  return R"({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7, "digest": ")" +
         D('c') + R"("},
    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 9, "digest": ")" +
         D('3') + R"("}]
  })";
}

std::string Entry(const std::string& platform, char digest, const std::string& extra = "") {
  return R"({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": ")" + D(digest) +
         R"(", "size": 500)" + (platform.empty() ? "" : R"(, "platform": )" + platform) + extra +
         "}";
}

std::string Index(const std::string& entries,
                  const std::string& media_type = std::string(kOciIndex)) {
  return R"({"schemaVersion": 2, "mediaType": ")" + media_type + R"(", "manifests": [)" + entries +
         "]}";
}

TEST(ManifestTest, ParsesOciManifest) {
  Result<ImageManifest> m = ParseImageManifest(OciManifest());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->schema_version, 2);
  EXPECT_EQ(m->media_type, kOciManifest);
  EXPECT_EQ(m->config.media_type, kOciConfig);
  EXPECT_EQ(m->config.digest, D('c'));
  EXPECT_EQ(m->config.size, 1234u);
  ASSERT_EQ(m->layers.size(), 2u);
  EXPECT_EQ(m->layers[0].media_type, kOciLayerGzip);
  EXPECT_EQ(m->layers[0].annotations.at("containerd.io/snapshot/stargz/toc.digest"), D('t'));
  EXPECT_EQ(m->layers[1].media_type, kOciLayerZstd);
  EXPECT_EQ(m->layers[1].size, 18446744073709551615ull);
  EXPECT_EQ(m->annotations.at("org.opencontainers.image.created"), "2024-01-01T00:00:00Z");
  EXPECT_TRUE(IsImageConfigMediaType(m->config.media_type));
}

TEST(ManifestTest, ParsesDockerManifest) {
  Result<ImageManifest> m = ParseImageManifest(DockerManifest());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->media_type, kDockerManifest);
  EXPECT_EQ(m->config.media_type, kDockerConfig);
  ASSERT_EQ(m->layers.size(), 1u);
  EXPECT_EQ(m->layers[0].media_type, kDockerLayerGzip);
  EXPECT_EQ(m->layers[0].size, 9u);
}

TEST(ManifestTest, ClassifiesByBodyHeaderAndShape) {
  EXPECT_EQ(*ClassifyManifest(OciManifest(), "application/vnd.oci.image.manifest.v1+json"),
            ManifestKind::kImage);
  // The body's mediaType wins over a generic Content-Type.
  EXPECT_EQ(*ClassifyManifest(DockerManifest(), "application/json; charset=utf-8"),
            ManifestKind::kImage);
  std::string index = Index(Entry(R"({"os":"linux","architecture":"amd64"})", '1'));
  EXPECT_EQ(*ClassifyManifest(index, ""), ManifestKind::kIndex);
  // OCI allows the body to omit mediaType: then the header, then the shape decide.
  std::string bare_index = R"({"schemaVersion":2,"manifests":[]})";
  EXPECT_EQ(*ClassifyManifest(bare_index, std::string(kDockerManifestList)), ManifestKind::kIndex);
  EXPECT_EQ(*ClassifyManifest(bare_index, ""), ManifestKind::kIndex);
  std::string bare_manifest = R"({"schemaVersion":2,"config":{},"layers":[]})";
  EXPECT_EQ(*ClassifyManifest(bare_manifest, ""), ManifestKind::kImage);
}

TEST(ManifestTest, RefusesSchema1) {
  std::string schema1 = R"({"schemaVersion":1,"name":"library/x","tag":"1","fsLayers":[]})";
  for (
      const auto& [body, type] :
      {std::pair<std::string, std::string>{schema1, ""},
       {schema1, std::string(kDockerSchema1Signed)},
       {"not even json", std::string(kDockerSchema1)},
       {R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"})",
        ""}}) {
    Result<ManifestKind> k = ClassifyManifest(body, type);
    ASSERT_FALSE(k.ok());
    EXPECT_EQ(k.status().code(), Code::kUnsupported);
    EXPECT_NE(k.status().message().find("deprecated schema1 manifest, not supported"),
              std::string::npos)
        << k.status().message();
  }
}

TEST(ManifestTest, RejectsBadInputClearly) {
  Result<ManifestKind> k = ClassifyManifest("{not json",
                                            "application/vnd.oci.image.manifest.v1+json");
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.status().code(), Code::kCorrupt);
  k = ClassifyManifest("[1,2]", "");
  EXPECT_EQ(k.status().code(), Code::kCorrupt);
  k = ClassifyManifest(R"({"schemaVersion":2,"mediaType":"application/vnd.example.thing"})", "");
  EXPECT_EQ(k.status().code(), Code::kUnsupported);

  struct Bad {
    std::string body;
    const char* needle;
  };
  std::string cfg = R"("config": {"mediaType": "x", "digest": ")" + D('c') + R"(", "size": 1})";
  const Bad bad[] = {
      {"", "not valid JSON"},
      {"{", "not valid JSON"},
      {"null", "not a JSON object"},
      {R"({"config":{},"layers":[]})", "schemaVersion"},
      {R"({"schemaVersion":3,)" + cfg + R"(,"layers":[]})", "schemaVersion 3"},
      {R"({"schemaVersion":2,"layers":[]})", "no config"},
      {R"({"schemaVersion":2,)" + cfg + "}", "no layers"},
      {R"({"schemaVersion":2,)" + cfg + R"(,"layers":{}})", "no layers"},
      {R"({"schemaVersion":2,)" + cfg +
           R"(,"layers":[{"mediaType":"x","digest":"sha256:abc","size":1}]})",
       "layers[0]"},
      {R"({"schemaVersion":2,)" + cfg + R"(,"layers":[{"mediaType":"x","digest":")" + D('A') +
           R"(","size":1}]})",
       "lowercase hex"},
      {R"({"schemaVersion":2,)" + cfg + R"(,"layers":[{"mediaType":"x","digest":")" + D('a') +
           R"(","size":-1}]})",
       "non-negative integer"},
      {R"({"schemaVersion":2,)" + cfg + R"(,"layers":[{"mediaType":"x","digest":")" + D('a') +
           R"(","size":1.5}]})",
       "non-negative integer"},
      {R"({"schemaVersion":2,)" + cfg + R"(,"layers":[{"mediaType":"x","digest":")" + D('a') +
           R"(","size":"1"}]})",
       "non-negative integer"},
      {R"({"schemaVersion":2,)" + cfg + R"(,"layers":[{"digest":")" + D('a') + R"(","size":1}]})",
       "no mediaType"},
      {R"({"schemaVersion":2,)" + cfg + R"(,"layers":[{"mediaType":"x","size":1}]})", "no digest"},
      {R"({"schemaVersion":2,)" + cfg + R"(,"layers":[{"mediaType":"x","digest":")" + D('a') +
           R"("}]})",
       "no size"},
      {R"({"schemaVersion":2,)" + cfg + R"(,"layers":[{"mediaType":"x","digest":")" + D('a') +
           R"(","size":1,"annotations":{"k":1}}]})",
       "must be a string"},
      {R"({"schemaVersion":2,)" + cfg + R"(,"layers":[], "annotations": []})", "annotations"},
      {R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",)" + cfg +
           R"(,"layers":[]})",
       "not an image manifest"},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.body);
    Result<ImageManifest> m = ParseImageManifest(b.body);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), Code::kCorrupt);
    EXPECT_NE(m.status().message().find(b.needle), std::string::npos) << m.status().message();
  }
  // A sha512 descriptor is a valid OCI digest that imgfs does not handle.
  std::string sha512 = R"({"schemaVersion":2,)" + cfg +
                       R"(,"layers":[{"mediaType":"x","digest":"sha512:)" + std::string(128, 'a') +
                       R"(","size":1}]})";
  EXPECT_EQ(ParseImageManifest(sha512).status().code(), Code::kUnsupported);
}

TEST(ManifestTest, RefusesMoreLayersThanTheLimit) {
  auto manifest_with = [](size_t layers) {
    std::string m =
        R"({"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:)" +
        std::string(64, 'c') + R"(","size":2},"layers":[)";
    for (size_t i = 0; i < layers; ++i) {
      if (i) m += ",";
      m += R"({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:)" +
           std::string(64, 'a') + R"(","size":1})";
    }
    return m + "]}";
  };
  EXPECT_TRUE(ParseImageManifest(manifest_with(kMaxImageLayers)).ok());
  std::string big = manifest_with(10000);
  ASSERT_LT(big.size(), kMaxManifestBytes);  // fits a registry's manifest limit
  Result<ImageManifest> m = ParseImageManifest(big);
  EXPECT_EQ(m.status().code(), Code::kUnsupported);
  EXPECT_THAT(m.status().message(), ::testing::HasSubstr("10000 layers"));
  EXPECT_THAT(m.status().message(), ::testing::HasSubstr("at most 1000"));
}

TEST(ManifestTest, ParsesIndexAndSelectsPlatform) {
  std::string body = Index(
      Entry(R"({"os":"linux","architecture":"amd64"})", '1') + "," +
          Entry(R"({"os":"linux","architecture":"arm64","variant":"v8"})", '2') + "," +
          Entry(R"({"os":"linux","architecture":"arm","variant":"v6"})", '3') + "," +
          Entry(R"({"os":"linux","architecture":"arm","variant":"v7"})", '4') + "," +
          Entry(R"({"os":"unknown","architecture":"unknown"})", '5',
                R"(, "annotations": {"vnd.docker.reference.type": "attestation-manifest"})"),
      std::string(kDockerManifestList));
  Result<ImageIndex> index = ParseImageIndex(body);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->media_type, kDockerManifestList);
  ASSERT_EQ(index->manifests.size(), 5u);
  ASSERT_TRUE(index->manifests[1].platform.has_value());
  EXPECT_EQ(index->manifests[1].platform->variant, "v8");

  auto pick = [&](const char* want) { return SelectPlatform(*index, *Platform::Parse(want)); };
  EXPECT_EQ(pick("linux/amd64")->digest, D('1'));
  EXPECT_EQ(pick("linux/arm64")->digest, D('2'));
  EXPECT_EQ(pick("linux/arm64/v8")->digest, D('2'));
  EXPECT_EQ(pick("linux/arm/v7")->digest, D('4'));
  EXPECT_EQ(pick("linux/arm/v6")->digest, D('3'));

  Result<Descriptor> none = pick("linux/s390x");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Code::kNotFound);
  EXPECT_EQ(none.status().message(),
            "no image for platform linux/s390x in the image index; available: linux/amd64, "
            "linux/arm64/v8, linux/arm/v6, linux/arm/v7");
  Result<Descriptor> named = SelectPlatform(*index, *Platform::Parse("linux/ppc64le"),
                                            "docker.io/library/x:1");
  EXPECT_NE(named.status().message().find("in docker.io/library/x:1;"), std::string::npos);
}

TEST(ManifestTest, NeverSelectsAttestations) {
  std::string body = Index(Entry(R"({"os":"unknown","architecture":"unknown"})", '5') + "," +
                           Entry("", '6'));
  Result<ImageIndex> index = ParseImageIndex(body);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  Result<Descriptor> d = SelectPlatform(*index, Platform{"unknown", "unknown", ""});
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("available: none"), std::string::npos);
}

TEST(ManifestTest, RejectsBadIndexes) {
  for (const std::string& body :
       {std::string(R"({"schemaVersion":2})"), std::string(R"({"schemaVersion":2,"manifests":{}})"),
        std::string(
            R"({"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"nope","size":1}]})"),
        Index(Entry(R"("linux/amd64")", '1')), Index(Entry(R"({"os":"linux"})", '1')),
        Index("", std::string(kOciManifest)), std::string("garbage")}) {
    SCOPED_TRACE(body);
    Result<ImageIndex> index = ParseImageIndex(body);
    ASSERT_FALSE(index.ok());
    EXPECT_EQ(index.status().code(), Code::kCorrupt);
  }
}

TEST(ManifestTest, AcceptHeaderNamesEveryKind) {
  std::string accept = ManifestAcceptHeader();
  for (std::string_view t :
       {kOciIndex, kOciManifest, kDockerManifestList, kDockerManifest, kDockerSchema1}) {
    EXPECT_NE(accept.find(t), std::string::npos) << t;
  }
}

}  // namespace
}  // namespace imgfs::registry
