// Decoding one fetch unit: compressed bytes in, the unit's decoded bytes out.
//
// Pure functions of their inputs; thread-safe. Malformed input gives kCorrupt, never a crash.
// The caller has already verified `compressed` against unit.sha256.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

// REQUIRES: compressed.size() == unit.clen. The result has exactly unit.ulen bytes.
Result<std::string> DecodeUnit(const Unit& unit, std::string_view compressed);

}  // namespace imgfs::fs
