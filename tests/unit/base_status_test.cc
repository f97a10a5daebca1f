#include "base/status.h"

#include <gtest/gtest.h>

#include "base/digest.h"

namespace imgfs {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return Status::InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  IMGFS_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(StatusTest, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "ok");
}

TEST(StatusTest, CarriesCodeAndContext) {
  Status s = Status::NotFound("tag latest").WithContext("library/alpine");
  EXPECT_TRUE(s.IsNotFound());
  EXPECT_EQ(s.ToString(), "not-found: library/alpine: tag latest");
}

TEST(ResultTest, PropagatesErrors) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST(ResultTest, BuiltFromAnOkStatusIsAnInternalError) {
  // In every build type, not only where assert() is compiled in.
  Status ok;
  Result<int> r = ok;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInternal);
  EXPECT_NE(r.status().message().find("OK Status"), std::string::npos) << r.status().message();
}

TEST(DigestTest, ValidatesForm) {
  EXPECT_TRUE(ValidateDigest("sha256:" + std::string(64, 'a')).ok());
  EXPECT_EQ(ValidateDigest("sha256:" + std::string(63, 'a')).code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateDigest("sha256:" + std::string(64, 'A')).code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateDigest("sha512:abc").code(), Code::kUnsupported);
  EXPECT_EQ(ValidateDigest("nodigest").code(), Code::kInvalidArgument);
}

TEST(DigestTest, HashesKnownVector) {
  EXPECT_EQ(Sha256Digest("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.Update("a");
  h.Update("bc");
  EXPECT_EQ(h.FinishDigest(), Sha256Digest("abc"));
}

}  // namespace
}  // namespace imgfs
