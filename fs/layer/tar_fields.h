// Field-level parsing for the tar reader: header numbers, PAX records and values, read as Go's
// archive/tar reads them (docker and containerd extract with it). Pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace imgfs::fs {

// A numeric header field: octal, space/NUL padded on either side, or GNU base-256.
bool ParseNumeric(std::string_view field, int64_t* out);

// Go's strconv.ParseInt(s, 10, 64): optional sign, decimal digits (leading zeros allowed).
bool ParseGoInt(std::string_view s, int64_t* out);

// A PAX number that must lie in [0, max].
bool ParsePaxUnsigned(std::string_view s, uint64_t max, uint64_t* out);

// A PAX time, "[-]sec[.frac]" (Go's parsePAXTime).
bool ParsePaxTime(std::string_view s, int64_t* sec, uint32_t* nsec);

// LIBARCHIVE.xattr names are %-encoded.
bool PercentDecode(std::string_view in, std::string* out);

// The records of one PAX header into `out` (later records of a key replace earlier ones), as
// Go's parsePAX: "LEN key=value\n" records whose lengths must add up, no NUL in keys or in the
// path/linkpath/uname/gname values, GNU sparse 0.0 offset/numbytes pairs joined into
// "GNU.sparse.map". kCorrupt (without an offset; the caller adds it) on malformed records.
Status ParsePaxRecords(std::string_view records, std::map<std::string, std::string>* out);

// The xattrs of a member's PAX records (SCHILY.xattr.NAME, LIBARCHIVE.xattr.%-NAME with a
// base64 value), one value per name, sorted by name. An empty value deletes the keyword
// (POSIX), and Go's archive/tar, which docker, containerd and umoci extract with, drops such
// xattrs. SCHILY's value wins when a writer emits both forms of one name.
Status XattrsFromPax(const std::map<std::string, std::string>& pax,
                     std::vector<std::pair<std::string, std::string>>* out);

}  // namespace imgfs::fs
