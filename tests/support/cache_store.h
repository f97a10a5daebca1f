// Reaching into a cache's content store from unit tests, to check what it wrote and to damage
// it on purpose. The layout is the one cache/cache.h documents; it is written out again here
// (not taken from the cache's own code) so a test notices when the store moves a file.
//
// Thread-safe; failures are recorded as gtest failures.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace imgfs::test {

// <cache_root>/blobs/sha256/<2 hex>/<64 hex>: the sparse file holding blob `digest`.
std::string StoredBlobPath(const std::string& cache_root, std::string_view digest);

// Flips bit 0x40 of the byte at `offset` of file `path`, in place.
void FlipByteInFile(const std::string& path, uint64_t offset);

}  // namespace imgfs::test
