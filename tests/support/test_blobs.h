// Byte builders shared by the unit tests that write layer blobs by hand (eStargz, zstd:chunked
// and the content readers over them): a gzip member, tar padding, seeded random bytes.
//
// Pure functions, safe from any thread. GzipMember records a gtest failure (and still returns
// what it has) when zlib refuses; the others cannot fail.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace imgfs::test {

// `data` as one complete gzip member (header, deflate at `level`, CRC32/ISIZE trailer), the
// unit of eStargz layers.
std::string GzipMember(std::string_view data, int level = 6);

// The zero bytes that pad a tar entry's `size` bytes of data to the next 512-byte block.
std::string TarPadding(uint64_t size);

// `n` bytes from std::mt19937 seeded with `seed`: the same bytes on every run, and
// incompressible, so compressed sizes are predictable.
std::string RandomBytes(size_t n, uint32_t seed);

}  // namespace imgfs::test
