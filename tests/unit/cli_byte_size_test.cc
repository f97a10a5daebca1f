// ParseByteSize (cli/config.h): the SIZE of --cache-max-size, --max-size,
// $IMGFS_CACHE_MAX_SIZE and the config file's [cache] max_size.
#include <gtest/gtest.h>

#include "cli/config.h"

namespace imgfs::cli {
namespace {

uint64_t Bytes(const std::string& text) {
  auto r = ParseByteSize(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().ToString();
  return r.ok() ? *r : ~uint64_t{0};
}

TEST(ParseByteSizeTest, PlainBytesAndBinarySuffixes) {
  EXPECT_EQ(Bytes("0"), 0u);
  EXPECT_EQ(Bytes("123"), 123u);
  EXPECT_EQ(Bytes("123B"), 123u);
  EXPECT_EQ(Bytes("1099511627776"), uint64_t{1} << 40);
  EXPECT_EQ(Bytes("1K"), 1024u);
  EXPECT_EQ(Bytes("512M"), 512u << 20);
  EXPECT_EQ(Bytes("10G"), uint64_t{10} << 30);
  EXPECT_EQ(Bytes("2T"), uint64_t{2} << 40);
  EXPECT_EQ(Bytes("20GiB"), uint64_t{20} << 30);
  EXPECT_EQ(Bytes("1.5g"), uint64_t{3} << 29);
  EXPECT_EQ(Bytes("8kib"), 8192u);
}

TEST(ParseByteSizeTest, DecimalSuffixesAreSpelledWithB) {
  EXPECT_EQ(Bytes("500MB"), 500000000u);
  EXPECT_EQ(Bytes("1KB"), 1000u);
  EXPECT_EQ(Bytes("3TB"), 3000000000000u);
}

TEST(ParseByteSizeTest, RejectsWhatIsNotASize) {
  for (const std::string bad :
       {"", "G", "-1", "1.2.3", "10X", "1GG", ".", "0x10", "18446744073709551616", "20000000T"}) {
    auto r = ParseByteSize(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "' parsed as " << (r.ok() ? *r : 0);
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
      EXPECT_NE(r.status().message().find("'" + bad + "'"), std::string::npos)
          << r.status().message();
    }
  }
}

}  // namespace
}  // namespace imgfs::cli
