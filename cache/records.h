// The byte formats of the cache index's records (docs/cache.md has the table) and the checks
// on a UnitRef's bytes: what the storage part writes, reads back and verifies.
//
// Integers are big-endian so that unit keys sort by offset. A record in an unknown format
// decodes as "nothing known" (or fails to decode): it is rewritten or dropped, never trusted.
//
// Thread-safety: functions of values only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "cache/cache.h"

namespace imgfs::cache {

inline constexpr size_t kHexLen = 64;

// Whether `s` is 64 lowercase hex characters: a blob's name in the store.
inline bool IsHex64(std::string_view s) {
  return s.size() == kHexLen && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

void AppendU64(std::string* out, uint64_t v);
uint64_t ReadU64(std::string_view s, size_t pos);  // REQUIRES: pos + 8 <= s.size()

int64_t NowUnix();

// units: key = blob hex + u64 coff; value = u64 clen + unit sha256 hex (the clen alone for a
// unit verified by its caller's UnitRef::verify).
std::string UnitKey(std::string_view blob_hex, uint64_t coff);
std::string UnitValue(uint64_t clen, std::string_view sha_hex);
// The unit's sha256 hex, or "" for a unit verified by its caller.
std::string_view UnitShaHex(const UnitRef& unit);
bool UnitValueMatches(std::string_view value, const UnitRef& unit);
// The clen of a well-formed units value, else nullopt.
std::optional<uint64_t> UnitValueClen(std::string_view value);

// blobs: key = blob hex; value = u8 version + u8 flags + u64 size + u64 last access.
struct BlobRecord {
  uint64_t size = 0;
  bool complete = false;
  int64_t access_unix = 0;
};
std::string EncodeBlobRecord(const BlobRecord& r);
BlobRecord DecodeBlobRecord(std::string_view v);

// refs: u64 fetch time + manifest digest.
std::string EncodeReference(const ReferenceRecord& r);
std::optional<ReferenceRecord> DecodeReference(std::string_view v);  // nullopt when damaged
// docs: u16 media type length + media type + bytes. nullopt when damaged or when the bytes do
// not hash to `digest`.
std::string EncodeDocument(std::string_view media_type, std::string_view bytes);
std::optional<Document> DecodeDocument(std::string_view digest, std::string_view v);
// layers: u8 1 + u32 CRC32 of the serialized index + the serialized index; the form earlier
// imgfs wrote, sha256 hex of the serialized index + the serialized index, is still read.
// Decode gives the serialized index as a view into `v`, nullopt when the checksum does not
// match.
std::string EncodeLayerIndex(std::string_view serialized);
std::optional<std::string_view> DecodeLayerIndex(std::string_view v);

// ---- units ----

// A UnitRef the cache accepts: a valid blob digest, a sha256 or a verifier, a length of
// 1..kMaxUnitBytes (base/blob_source.h), a plausible offset. kInvalidArgument naming the
// unit otherwise.
Status CheckUnit(const UnitRef& unit);
// Checks `bytes` against the unit's length and sha256 or verify (whose exceptions are caught).
// On failure `*actual` says what was found instead ("sha256:..." or the verifier's complaint).
bool VerifyUnitBytes(const UnitRef& unit, std::string_view bytes, std::string* actual);
// What a unit's bytes must satisfy, and its range, for messages.
std::string Expectation(const UnitRef& unit);
std::string RangeText(const UnitRef& unit);

}  // namespace imgfs::cache
