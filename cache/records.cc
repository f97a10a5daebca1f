#include "cache/records.h"

#include <libdeflate.h>

#include <chrono>
#include <exception>

#include "base/digest.h"

namespace imgfs::cache {
namespace {

constexpr char kBlobRecordVersion = 1;
constexpr size_t kBlobRecordLen = 2 + 8 + 8;

}  // namespace

void AppendU64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

uint64_t ReadU64(std::string_view s, size_t pos) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(s[pos + i]);
  return v;
}

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string UnitKey(std::string_view blob_hex, uint64_t coff) {
  std::string key(blob_hex);
  AppendU64(&key, coff);
  return key;
}

std::string UnitValue(uint64_t clen, std::string_view sha_hex) {
  std::string v;
  AppendU64(&v, clen);
  v.append(sha_hex);
  return v;
}

std::string_view UnitShaHex(const UnitRef& unit) {
  return unit.sha256.empty() ? std::string_view() : DigestHex(unit.sha256);
}

bool UnitValueMatches(std::string_view value, const UnitRef& unit) {
  std::string_view hex = UnitShaHex(unit);
  return value.size() == 8 + hex.size() && ReadU64(value, 0) == unit.clen && value.substr(8) == hex;
}

std::optional<uint64_t> UnitValueClen(std::string_view value) {
  if (value.size() != 8 + kHexLen && value.size() != 8) return std::nullopt;
  return ReadU64(value, 0);
}

std::string EncodeBlobRecord(const BlobRecord& r) {
  std::string v;
  v.push_back(kBlobRecordVersion);
  v.push_back(r.complete ? 1 : 0);
  AppendU64(&v, r.size);
  AppendU64(&v, static_cast<uint64_t>(r.access_unix));
  return v;
}

BlobRecord DecodeBlobRecord(std::string_view v) {
  BlobRecord r;
  if (v.size() != kBlobRecordLen || v[0] != kBlobRecordVersion) return r;
  r.complete = (v[1] & 1) != 0;
  r.size = ReadU64(v, 2);
  r.access_unix = static_cast<int64_t>(ReadU64(v, 10));
  return r;
}

std::string EncodeReference(const ReferenceRecord& r) {
  std::string value;
  AppendU64(&value, static_cast<uint64_t>(r.fetched_unix));
  value.append(r.manifest_digest);
  return value;
}

std::optional<ReferenceRecord> DecodeReference(std::string_view v) {
  if (v.size() <= 8) return std::nullopt;
  ReferenceRecord record;
  record.fetched_unix = static_cast<int64_t>(ReadU64(v, 0));
  record.manifest_digest = std::string(v.substr(8));
  if (!ValidateDigest(record.manifest_digest).ok()) return std::nullopt;
  return record;
}

std::string EncodeDocument(std::string_view media_type, std::string_view bytes) {
  std::string value;
  value.push_back(static_cast<char>(media_type.size() >> 8));
  value.push_back(static_cast<char>(media_type.size() & 0xff));
  value.append(media_type);
  value.append(bytes);
  return value;
}

std::optional<Document> DecodeDocument(std::string_view digest, std::string_view v) {
  if (v.size() < 2) return std::nullopt;
  size_t type_len = (static_cast<unsigned char>(v[0]) << 8) | static_cast<unsigned char>(v[1]);
  if (v.size() < 2 + type_len) return std::nullopt;
  Document doc;
  doc.media_type = std::string(v.substr(2, type_len));
  doc.bytes = std::string(v.substr(2 + type_len));
  if (Sha256Digest(doc.bytes) != digest) return std::nullopt;
  return doc;
}

namespace {

// The first byte of a `layers` value in the CRC form; a value of the sha256 form starts with
// a hex digit.
constexpr char kLayerIndexCrcForm = '\x01';
constexpr size_t kLayerIndexCrcHead = 1 + 4;

uint32_t LayerIndexCrc(std::string_view serialized) {
  return libdeflate_crc32(0, serialized.data(), serialized.size());
}

}  // namespace

std::string EncodeLayerIndex(std::string_view serialized) {
  // The index is opaque here, but a checksum lets a damaged copy be dropped instead of fed to
  // the deserializer. A CRC32 (libdeflate's, folded with carry-less multiplication: tens of
  // GB/s) does that as well as a sha256 did, at a fraction of a mount's time; neither keeps
  // out a record written on purpose (docs/cache.md, "Trusting the store").
  std::string value;
  value.reserve(kLayerIndexCrcHead + serialized.size());
  value.push_back(kLayerIndexCrcForm);
  const uint32_t crc = LayerIndexCrc(serialized);
  for (int shift = 24; shift >= 0; shift -= 8) value.push_back(static_cast<char>(crc >> shift));
  value.append(serialized);
  return value;
}

std::optional<std::string_view> DecodeLayerIndex(std::string_view v) {
  if (!v.empty() && v[0] == kLayerIndexCrcForm) {
    if (v.size() < kLayerIndexCrcHead) return std::nullopt;
    uint32_t crc = 0;
    for (size_t i = 1; i < kLayerIndexCrcHead; ++i) {
      crc = (crc << 8) | static_cast<unsigned char>(v[i]);
    }
    std::string_view serialized = v.substr(kLayerIndexCrcHead);
    if (LayerIndexCrc(serialized) != crc) return std::nullopt;
    return serialized;
  }
  // The sha256 form, written by earlier imgfs: still read.
  if (v.size() < kHexLen || DigestHex(Sha256Digest(v.substr(kHexLen))) != v.substr(0, kHexLen)) {
    return std::nullopt;
  }
  return v.substr(kHexLen);
}

Status CheckUnit(const UnitRef& unit) {
  Status s = ValidateDigest(unit.blob);
  if (!s.ok()) return s.WithContext("unit blob");
  if (unit.sha256.empty()) {
    if (!unit.verify) {
      return Status::InvalidArgument("unit of blob " + unit.blob + " at offset " +
                                     std::to_string(unit.coff) +
                                     " has neither a digest nor a verifier");
    }
  } else {
    s = ValidateDigest(unit.sha256);
    if (!s.ok()) return s.WithContext("unit of blob " + unit.blob);
  }
  if (unit.clen == 0 || unit.clen > kMaxUnitBytes) {
    return Status::InvalidArgument(
        "unit of blob " + unit.blob + " at offset " + std::to_string(unit.coff) + " has length " +
        std::to_string(unit.clen) + " (must be 1.." + std::to_string(kMaxUnitBytes) + ")");
  }
  if (unit.coff > (uint64_t{1} << 62)) {
    return Status::InvalidArgument("unit of blob " + unit.blob + " has offset " +
                                   std::to_string(unit.coff) + ", beyond any blob");
  }
  return Status::Ok();
}

bool VerifyUnitBytes(const UnitRef& unit, std::string_view bytes, std::string* actual) {
  if (bytes.size() != unit.clen) {
    *actual = std::to_string(bytes.size()) + " bytes instead of " + std::to_string(unit.clen);
    return false;
  }
  if (!unit.sha256.empty()) {
    *actual = Sha256Digest(bytes);
    return *actual == unit.sha256;
  }
  Status s;
  try {
    s = unit.verify(bytes);
  } catch (const std::exception& e) {
    s = Status::Internal(std::string("unit verifier threw: ") + e.what());
  } catch (...) {
    s = Status::Internal("unit verifier threw");
  }
  *actual = s.ok() ? std::string() : s.ToString();
  return s.ok();
}

std::string Expectation(const UnitRef& unit) {
  return unit.sha256.empty() ? std::string("the digests of its decoded chunks") : unit.sha256;
}

std::string RangeText(const UnitRef& unit) {
  return "[" + std::to_string(unit.coff) + ", " + std::to_string(unit.coff + unit.clen) + ")";
}

}  // namespace imgfs::cache
