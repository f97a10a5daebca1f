#include "registry/platform.h"

#include <gtest/gtest.h>

#include <sys/utsname.h>

#include <string>

namespace imgfs::registry {
namespace {

TEST(PlatformTest, ParsesOsArchVariant) {
  Result<Platform> p = Platform::Parse("linux/amd64");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->os, "linux");
  EXPECT_EQ(p->architecture, "amd64");
  EXPECT_EQ(p->variant, "");
  EXPECT_EQ(p->String(), "linux/amd64");

  p = Platform::Parse("linux/arm64/v8");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->String(), "linux/arm64/v8");

  p = Platform::Parse("linux/arm/v7");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->architecture, "arm");
  EXPECT_EQ(p->variant, "v7");
}

TEST(PlatformTest, NormalizesAliases) {
  EXPECT_EQ(Platform::Parse("Linux/X86_64")->String(), "linux/amd64");
  EXPECT_EQ(Platform::Parse("linux/aarch64")->architecture, "arm64");
  EXPECT_EQ(Platform::Parse("linux/armhf")->String(), "linux/arm/v7");
  EXPECT_EQ(Platform::Parse("linux/arm/7")->variant, "v7");
  EXPECT_EQ(Platform::Parse("linux/arm")->variant, "v7");
}

TEST(PlatformTest, RejectsMalformed) {
  for (const char* s :
       {"", "linux", "linux/", "/amd64", "linux/amd64/v8/x", "linux amd64", "linux//amd64"}) {
    SCOPED_TRACE(s);
    Result<Platform> p = Platform::Parse(s);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
    EXPECT_NE(p.status().message().find("os/architecture"), std::string::npos);
  }
}

TEST(PlatformTest, HostFollowsUname) {
  struct utsname u;
  ASSERT_EQ(uname(&u), 0);
  std::string machine = u.machine;
  Platform host = Platform::Host();
  EXPECT_EQ(host.os, "linux");
  if (machine == "x86_64") {
    EXPECT_EQ(host.String(), "linux/amd64");
  } else if (machine == "aarch64") {
    EXPECT_EQ(host.String(), "linux/arm64/v8");
  } else if (machine == "armv7l") {
    EXPECT_EQ(host.String(), "linux/arm/v7");
  }
  EXPECT_FALSE(host.architecture.empty());
  // The host always runs images of its own platform.
  EXPECT_GT(PlatformMatch(host, host), 0);
}

TEST(PlatformTest, MatchingFollowsContainerd) {
  auto P = [](const char* s) { return *Platform::Parse(s); };
  EXPECT_GT(PlatformMatch(P("linux/amd64"), P("linux/amd64")), 0);
  EXPECT_EQ(PlatformMatch(P("linux/amd64"), P("linux/arm64")), 0);
  EXPECT_EQ(PlatformMatch(P("linux/amd64"), P("windows/amd64")), 0);
  // arm64: "" and v8 are the same.
  EXPECT_GT(PlatformMatch(P("linux/arm64/v8"), Platform{"linux", "arm64", ""}), 0);
  EXPECT_GT(PlatformMatch(Platform{"linux", "arm64", ""}, P("linux/arm64/v8")), 0);
  // arm/v7 runs v6 and v5 images, preferring the closest; v6 does not run v7.
  int v7 = PlatformMatch(P("linux/arm/v7"), P("linux/arm/v7"));
  int v6 = PlatformMatch(P("linux/arm/v7"), P("linux/arm/v6"));
  int v5 = PlatformMatch(P("linux/arm/v7"), P("linux/arm/v5"));
  EXPECT_GT(v7, v6);
  EXPECT_GT(v6, v5);
  EXPECT_GT(v5, 0);
  EXPECT_EQ(PlatformMatch(P("linux/arm/v6"), P("linux/arm/v7")), 0);
}

}  // namespace
}  // namespace imgfs::registry
