#include "tests/support/cache_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "base/digest.h"

namespace imgfs::test {

std::string StoredBlobPath(const std::string& cache_root, std::string_view digest) {
  std::string hex(DigestHex(digest));
  return cache_root + "/blobs/sha256/" + hex.substr(0, 2) + "/" + hex;
}

void FlipByteInFile(const std::string& path, uint64_t offset) {
  int fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  char c;
  ASSERT_EQ(pread(fd, &c, 1, offset), 1);
  c ^= 0x40;
  ASSERT_EQ(pwrite(fd, &c, 1, offset), 1);
  close(fd);
}

}  // namespace imgfs::test
