#include "base/base64.h"

#include <gtest/gtest.h>

#include <vector>

namespace imgfs {
namespace {

TEST(Base64Test, RoundTripsEveryLengthModThree) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "user:pass", std::string("\0\xff\x10", 3)}) {
    std::optional<std::string> back = DecodeBase64(EncodeBase64(s));
    ASSERT_TRUE(back.has_value()) << s;
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(EncodeBase64("user:pass"), "dXNlcjpwYXNz");
}

TEST(Base64Test, AcceptsUnpaddedAndTrailingNewline) {
  EXPECT_EQ(DecodeBase64("aGVsbG8"), "hello");
  EXPECT_EQ(DecodeBase64("aGVsbG8=\n"), "hello");
}

TEST(Base64Test, RejectsGarbage) {
  EXPECT_FALSE(DecodeBase64("a").has_value());
  EXPECT_FALSE(DecodeBase64("ab$d").has_value());
  EXPECT_FALSE(DecodeBase64("ab=cd").has_value());
}

}  // namespace
}  // namespace imgfs
