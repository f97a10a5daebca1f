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

// Whether DecodeUnit checks `compressed` against a checksum the bytes carry, so that damage to
// them fails the decode: gzip members (the CRC32 and length of each member's decoded bytes)
// and zstd frames written with a content checksum (XXH64; the first frame's header says). Not
// zran spans or raw units, which carry none.
bool DecodeChecksItself(const Unit& unit, std::string_view compressed);

// DecodeUnit of bytes that carry their own checksum, checked: the gzip member or zstd frame in
// which the unit's decoded length ends must end there too, trailer or checksum verified (a
// damaged stream that decodes to more bytes is caught, not cut at ulen). kCorrupt otherwise;
// kInternal when !DecodeChecksItself(unit, compressed).
Result<std::string> DecodeUnitChecked(const Unit& unit, std::string_view compressed);

}  // namespace imgfs::fs
