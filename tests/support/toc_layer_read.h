// Reading a TOC layer (eStargz, zstd:chunked) through its LayerIndex in unit tests, the way
// the content reader does: fetch each unit's bytes, decode, check the chunk digests, copy out.
//
// Header-only on purpose: it calls imgfs_layer, which imgfs_test_support does not link (every
// unit test links the support library, and most of them must build without the layer module).
// Include it only from tests that link imgfs_layer.
//
// Pure functions over the caller's objects; safe from any thread. Failures to decode or verify
// are recorded as gtest failures.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "fs/layer/decode.h"
#include "fs/layer/layer_index.h"
#include "fs/layer/toc.h"

namespace imgfs::test {

// The bytes of file `e` of `index` (built from a TOC), read from the whole `blob`. Stops at the
// first unit that does not decode.
inline std::string ReadEntry(const fs::LayerIndex& index, const std::string& blob,
                             const fs::Entry& e) {
  const std::vector<std::vector<fs::ChunkCheck>> checks = fs::UnitChecks(index);
  std::string out;
  for (const fs::Chunk& c : e.chunks) {
    EXPECT_EQ(c.file_offset, out.size());
    if (c.unit == fs::Chunk::kZeroUnit) {
      out.append(c.length, '\0');
      continue;
    }
    const fs::Unit& u = index.units.at(c.unit);
    auto decoded = fs::DecodeUnit(u, std::string_view(blob).substr(u.coff, u.clen));
    EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
    if (!decoded.ok()) return out;
    Status s = fs::VerifyDecodedUnit(checks.at(c.unit), *decoded);
    EXPECT_TRUE(s.ok()) << s.ToString();
    out += decoded->substr(c.unit_offset, c.length);
  }
  return out;
}

// The entry of `index` at `path`, or nullptr.
inline const fs::Entry* FindEntry(const fs::LayerIndex& index, const std::string& path) {
  for (const fs::Entry& e : index.entries) {
    if (e.path == path) return &e;
  }
  return nullptr;
}

}  // namespace imgfs::test
