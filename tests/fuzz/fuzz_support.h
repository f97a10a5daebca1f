// Shared pieces of the fuzz targets (tests/fuzz/*_fuzz.cc).
//
// Each target defines LLVMFuzzerTestOneInput. Built with IMGFS_FUZZ=ON (clang) it links
// libFuzzer; otherwise driver_main.cc runs it once over every file of the corpus given on the
// command line, which is how the checked-in corpus runs as a regression test under any
// compiler. A target reports a finding by crashing: a sanitizer error, or FUZZ_CHECK below
// failing on an invariant the parser promises (an accepted value that violates its own
// contract, a code outside the documented ones).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "base/log.h"
#include "base/status.h"

namespace imgfs::fuzz {

// Aborts (a finding) with the failed condition and `detail` when `cond` is false.
#define FUZZ_CHECK(cond, detail)                                                               \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   std::string(detail).c_str());                                               \
      std::abort();                                                                            \
    }                                                                                          \
  } while (0)

inline std::string_view AsView(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Parsers log what they skip; thousands of lines a second would only slow the fuzzer.
inline const bool kQuietLog = [] {
  SetLogLevel(LogLevel::kError);
  return true;
}();

// True when `status` is an error of one of the codes malformed outside data may give.
inline bool IsInputError(const Status& status) {
  switch (status.code()) {
    case Code::kCorrupt:
    case Code::kInvalidArgument:
    case Code::kUnsupported:
    case Code::kDigestMismatch:
      return true;
    default:
      return false;
  }
}

}  // namespace imgfs::fuzz
