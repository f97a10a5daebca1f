#include "registry/reference.h"

#include <gtest/gtest.h>

#include <string>

namespace imgfs::registry {
namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');

struct Case {
  const char* input;
  const char* domain;
  const char* repository;
  const char* tag;
  std::string digest;
  const char* string;
};

TEST(ReferenceTest, NormalizesLikeDocker) {
  const Case cases[] = {
      {"alpine", "docker.io", "library/alpine", "latest", "", "docker.io/library/alpine:latest"},
      {"alpine:3.19", "docker.io", "library/alpine", "3.19", "", "docker.io/library/alpine:3.19"},
      {"user/img", "docker.io", "user/img", "latest", "", "docker.io/user/img:latest"},
      {"docker.io/alpine", "docker.io", "library/alpine", "latest", "",
       "docker.io/library/alpine:latest"},
      {"index.docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", "",
       "docker.io/library/alpine:edge"},
      {"docker.io/library/alpine", "docker.io", "library/alpine", "latest", "",
       "docker.io/library/alpine:latest"},
      {"localhost/foo", "localhost", "foo", "latest", "", "localhost/foo:latest"},
      {"localhost:5000/foo/bar:v1", "localhost:5000", "foo/bar", "v1", "",
       "localhost:5000/foo/bar:v1"},
      {"127.0.0.1:41234/x", "127.0.0.1:41234", "x", "latest", "", "127.0.0.1:41234/x:latest"},
      {"ghcr.io/owner/repo", "ghcr.io", "owner/repo", "latest", "", "ghcr.io/owner/repo:latest"},
      {"quay.io/a/b/c/d:1_0-rc.2", "quay.io", "a/b/c/d", "1_0-rc.2", "",
       "quay.io/a/b/c/d:1_0-rc.2"},
      // A lone "host:port" is a name with a tag, exactly as docker reads it.
      {"localhost:5000", "docker.io", "library/localhost", "5000", "",
       "docker.io/library/localhost:5000"},
      {"[::1]:5000/foo", "[::1]:5000", "foo", "latest", "", "[::1]:5000/foo:latest"},
      {"my-registry.example.com:443/team/app", "my-registry.example.com:443", "team/app", "latest",
       "", "my-registry.example.com:443/team/app:latest"},
      {"foo_bar/baz--qux.x__y", "docker.io", "foo_bar/baz--qux.x__y", "latest", "",
       "docker.io/foo_bar/baz--qux.x__y:latest"},
      {"Host.Example.com/app", "Host.Example.com", "app", "latest", "",
       "Host.Example.com/app:latest"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.input);
    Result<Reference> r = Reference::Parse(c.input);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->domain, c.domain);
    EXPECT_EQ(r->repository, c.repository);
    EXPECT_EQ(r->tag, c.tag);
    EXPECT_EQ(r->digest, c.digest);
    EXPECT_EQ(r->String(), c.string);
  }
}

TEST(ReferenceTest, DigestOnlyHasNoTag) {
  Result<Reference> r = Reference::Parse("ghcr.io/owner/repo@" + kDigest);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tag, "");
  EXPECT_EQ(r->digest, kDigest);
  EXPECT_EQ(r->String(), "ghcr.io/owner/repo@" + kDigest);
  EXPECT_EQ(r->Repo(), "ghcr.io/owner/repo");
}

TEST(ReferenceTest, TagAndDigestAreBothKept) {
  Result<Reference> r = Reference::Parse("alpine:3.19@" + kDigest);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tag, "3.19");
  EXPECT_EQ(r->digest, kDigest);
  EXPECT_EQ(r->String(), "docker.io/library/alpine:3.19@" + kDigest);
  Result<Reference> h = Reference::Parse("localhost:5000/a/b:t@" + kDigest);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->domain, "localhost:5000");
  EXPECT_EQ(h->repository, "a/b");
  EXPECT_EQ(h->tag, "t");
}

TEST(ReferenceTest, ParseOfStringIsIdentity) {
  for (const char* s : {"alpine", "user/img:1", "localhost:5000/x/y:z", "[::1]/q"}) {
    Result<Reference> a = Reference::Parse(s);
    ASSERT_TRUE(a.ok());
    Result<Reference> b = Reference::Parse(a->String());
    ASSERT_TRUE(b.ok()) << a->String();
    EXPECT_EQ(*a, *b);
  }
}

TEST(ReferenceTest, RejectsMalformedReferences) {
  const std::string long_name(256, 'a');
  const char* bad[] = {
      "",
      ":tag",
      "alpine:",
      "alpine:-x",
      "alpine:.x",
      "a/b/",
      "/a",
      "a//b",
      "-foo",
      "foo-",
      "foo bar",
      "a___b",
      "foo@",
      "foo@sha256:abc",
      "foo@sha256",
      "host:abc/x",
      "host:/x",
      "[::1/x",
      "[zz]:5000/x",
      "ho_st.com/x",
      "localhost:5000/",
  };
  for (const char* s : bad) {
    SCOPED_TRACE(s);
    Result<Reference> r = Reference::Parse(s);
    ASSERT_FALSE(r.ok()) << r->String();
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_EQ(r.status().message().rfind("invalid reference format", 0), 0u)
        << r.status().message();
  }
  EXPECT_FALSE(Reference::Parse(long_name).ok());
  EXPECT_FALSE(Reference::Parse("x:" + std::string(129, 't')).ok());
  EXPECT_TRUE(Reference::Parse("x:" + std::string(128, 't')).ok());
}

TEST(ReferenceTest, UppercaseRepositoryNamesTheProblem) {
  for (const char* s : {"Alpine", "docker.io/Foo/bar", "localhost:5000/MyApp:v1", "user/Img"}) {
    SCOPED_TRACE(s);
    Result<Reference> r = Reference::Parse(s);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find("must be lowercase"), std::string::npos)
        << r.status().message();
  }
  // Tags may be upper case.
  EXPECT_TRUE(Reference::Parse("alpine:V1").ok());
}

TEST(ReferenceTest, RejectsHexIdentifierAndOtherDigestAlgorithms) {
  Result<Reference> hex = Reference::Parse(std::string(64, 'b'));
  ASSERT_FALSE(hex.ok());
  EXPECT_NE(hex.status().message().find("64-byte hexadecimal"), std::string::npos);

  Result<Reference> sha512 = Reference::Parse("alpine@sha512:" + std::string(128, 'c'));
  ASSERT_FALSE(sha512.ok());
  EXPECT_EQ(sha512.status().code(), Code::kUnsupported);

  Result<Reference> upper = Reference::Parse("alpine@sha256:" + std::string(64, 'A'));
  ASSERT_FALSE(upper.ok());
}

TEST(ReferenceTest, ApiHostAndLoopback) {
  EXPECT_EQ(Reference::Parse("alpine")->ApiHost(), "registry-1.docker.io");
  EXPECT_EQ(Reference::Parse("ghcr.io/a/b")->ApiHost(), "ghcr.io");
  EXPECT_EQ(Reference::Parse("localhost:5000/a")->ApiHost(), "localhost:5000");

  EXPECT_TRUE(Reference::Parse("localhost/a")->IsInsecureLoopback());
  EXPECT_TRUE(Reference::Parse("localhost:5000/a")->IsInsecureLoopback());
  EXPECT_TRUE(Reference::Parse("127.0.0.1:41234/a")->IsInsecureLoopback());
  EXPECT_TRUE(Reference::Parse("127.9.8.7/a")->IsInsecureLoopback());
  EXPECT_TRUE(Reference::Parse("[::1]:5000/a")->IsInsecureLoopback());
  EXPECT_TRUE(Reference::Parse("[::1]/a")->IsInsecureLoopback());
  EXPECT_FALSE(Reference::Parse("alpine")->IsInsecureLoopback());
  EXPECT_FALSE(Reference::Parse("128.0.0.1:5000/a")->IsInsecureLoopback());
  EXPECT_FALSE(Reference::Parse("localhost.example.com/a")->IsInsecureLoopback());
  EXPECT_FALSE(Reference::Parse("127.0.0.1.nip.io/a")->IsInsecureLoopback());
}

}  // namespace
}  // namespace imgfs::registry
