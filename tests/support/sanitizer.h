// Bounds of tests that also run under AddressSanitizer: `scripts/test --sanitize` builds every
// test and the imgfs binary with -fsanitize=address,undefined (IMGFS_SANITIZE). A test states
// its memory and time bounds for the normal build and asserts them through these functions,
// which loosen them by what the instrumentation costs and nothing more. Nothing is skipped: a
// peak that grows with the input still breaks the loosened bound.
//
// Memory. ASan surrounds every heap block with redzones (at least 16 bytes; small blocks about
// double), keeps one shadow byte per 8 bytes of the heap, and parks freed blocks in a
// quarantine of up to 256 MiB (ASAN_OPTIONS quarantine_size_mb) before reusing them, so that a
// use after free is caught. A peak RSS that is N under the normal build is at most
// kAsanMemoryFactor * N + kAsanQuarantineBytes under ASan.
//
// Time. Instrumented code runs 2-3 times slower, and the sanitized build is unoptimised
// (Debug, scripts/test): 5-10 times slower on a loaded machine, as measured (building a tree of
// 100,000 entries, mounting and listing 200,000). Waits for work and wall-clock limits are
// multiplied by TimeScale().
//
// Header-only and constexpr: the answer is that of the translation unit's own compile flags,
// which the tests share with the libraries and the imgfs binary (imgfs_options).
#pragma once

#include <cstdint>

#if defined(__SANITIZE_ADDRESS__)
#define IMGFS_TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IMGFS_TEST_UNDER_ASAN 1
#endif
#endif
#ifndef IMGFS_TEST_UNDER_ASAN
#define IMGFS_TEST_UNDER_ASAN 0
#endif

namespace imgfs::test {

inline constexpr bool kUnderAsan = IMGFS_TEST_UNDER_ASAN != 0;

inline constexpr uint64_t kAsanMemoryFactor = 3;
inline constexpr uint64_t kAsanQuarantineBytes = uint64_t{256} << 20;

// The bound, in this build, of a peak memory (or its growth) bounded by `normal_bytes` in the
// normal build.
constexpr uint64_t PeakMemoryBound(uint64_t normal_bytes) {
  return kUnderAsan ? normal_bytes * kAsanMemoryFactor + kAsanQuarantineBytes : normal_bytes;
}

// How much longer anything takes in this build than in the normal one.
constexpr double TimeScale() { return kUnderAsan ? 10.0 : 1.0; }

// `seconds` of the normal build, in this build.
constexpr double ScaledSeconds(double seconds) { return seconds * TimeScale(); }

}  // namespace imgfs::test
