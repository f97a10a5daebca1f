// The check of a borrowed index's entry against the tar header in front of its data
// (fs/tree/header_check.h): headers written by the test's own tar builder.
#include "fs/tree/header_check.h"

#include <gtest/gtest.h>

#include "tests/support/tar_builder.h"

namespace imgfs::fs {
namespace {

Entry File(const std::string& path, uint64_t size) {
  Entry e;
  e.path = path;
  e.size = size;
  e.chunks.push_back(Chunk{0, size, 0, 512});
  return e;
}

std::string HeaderOf(const std::string& name, uint64_t size, char type = '0') {
  test::Hdr h;
  h.name = name;
  h.size = size;
  h.type = type;
  return test::Header(h);
}

TEST(HeaderCheckTest, TheFilesOwnHeaderPasses) {
  EXPECT_TRUE(CheckTarHeaderFor(HeaderOf("etc/owned", 19), File("etc/owned", 19)).ok());
  EXPECT_TRUE(CheckTarHeaderFor(HeaderOf("./etc/owned", 19), File("etc/owned", 19)).ok());
  // A name too long for the header's fields came from PAX or GNU records: not compared.
  const std::string long_name = std::string(120, 'd') + "/f.txt";
  EXPECT_TRUE(CheckTarHeaderFor(HeaderOf("truncated", 5), File(long_name, 5)).ok());
}

TEST(HeaderCheckTest, AnotherFilesHeaderOrDataFails) {
  Status s = CheckTarHeaderFor(HeaderOf("etc/nsec-file", 12), File("etc/owned", 12));
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_NE(s.message().find("names \"etc/nsec-file\""), std::string::npos) << s.ToString();
  s = CheckTarHeaderFor(HeaderOf("etc/owned", 20), File("etc/owned", 19));
  EXPECT_NE(s.message().find("says 20 bytes, the index 19"), std::string::npos) << s.ToString();
  s = CheckTarHeaderFor(HeaderOf("etc/owned", 19, '5'), File("etc/owned", 19));
  EXPECT_NE(s.message().find("not a regular file"), std::string::npos) << s.ToString();
  std::string broken = HeaderOf("etc/owned", 19);
  broken[0] = 'E';  // checksum no longer matches
  EXPECT_EQ(CheckTarHeaderFor(broken, File("etc/owned", 19)).code(), Code::kCorrupt);
  EXPECT_EQ(CheckTarHeaderFor(std::string(512, 'x'), File("etc/owned", 19)).code(), Code::kCorrupt);
  EXPECT_EQ(CheckTarHeaderFor("", File("etc/owned", 19)).code(), Code::kCorrupt);
  Entry sparse = File("s", 19);
  sparse.chunks.insert(sparse.chunks.begin(), Chunk{0, 0, Chunk::kZeroUnit, 0});
  EXPECT_EQ(CheckTarHeaderFor(HeaderOf("s", 19), sparse).code(), Code::kCorrupt);
}

}  // namespace
}  // namespace imgfs::fs
