#include "fs/tree/header_check.h"

#include <cstdint>
#include <string>

#include "fs/layer/tar_fields.h"

namespace imgfs::fs {
namespace {

constexpr size_t kBlock = 512;
// The largest size an octal ustar size field holds (11 digits); beyond it a PAX record or
// base-256 carries the size.
constexpr uint64_t kMaxOctalSize = 077777777777ull;

std::string_view Field(std::string_view header, size_t off, size_t len) {
  std::string_view f = header.substr(off, len);
  size_t nul = f.find('\0');
  return nul == std::string_view::npos ? f : f.substr(0, nul);
}

}  // namespace

Status CheckTarHeaderFor(std::string_view header, const Entry& entry) {
  const std::string what = "file \"" + AbbreviateName(entry.path) + "\": ";
  for (const Chunk& c : entry.chunks) {
    if (c.unit == Chunk::kZeroUnit) {
      return Status::Corrupt(what +
                             "has holes; a sparse file of a layer indexed through "
                             "referrers cannot be checked, so it is not served");
    }
  }
  if (header.size() != kBlock) return Status::Corrupt(what + "no tar header in front of it");
  int64_t stated = 0;
  if (!ParseNumeric(header.substr(148, 8), &stated)) {
    return Status::Corrupt(what + "the bytes in front of its data are not a tar header");
  }
  int64_t sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(header[i]);
  }
  if (sum != stated) {
    return Status::Corrupt(what +
                           "the bytes in front of its data are not a tar header "
                           "(checksum)");
  }
  const char type = header[156];
  if (type != '0' && type != '\0' && type != '7') {
    return Status::Corrupt(what + "the tar header in front of its data is of type '" +
                           std::string(1, type) + "', not a regular file");
  }
  int64_t size = 0;
  if (!ParseNumeric(header.substr(124, 12), &size) ||
      (entry.size <= kMaxOctalSize && static_cast<uint64_t>(size) != entry.size)) {
    return Status::Corrupt(what + "the tar header in front of its data says " +
                           std::to_string(size) + " bytes, the index " +
                           std::to_string(entry.size));
  }
  // ustar splits a name into prefix (155) and name (100); a longer one sits in PAX or GNU
  // records before this header.
  std::string name(Field(header, 0, 100));
  if (header.substr(257, 5) == "ustar") {
    std::string_view prefix = Field(header, 345, 155);
    if (!prefix.empty()) name = std::string(prefix) + "/" + name;
  }
  if (entry.path.size() < 100) {
    Result<std::string> clean = CleanPath(name);
    if (!clean.ok() || *clean != entry.path) {
      return Status::Corrupt(what + "the tar header in front of its data names \"" +
                             AbbreviateName(name) + "\"");
    }
  }
  return Status::Ok();
}

}  // namespace imgfs::fs
