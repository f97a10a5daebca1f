#include "fs/layer/tar_fields.h"

#include <iterator>
#include <limits>
#include <optional>

#include "base/base64.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

// Octal (space/NUL padded on either side) or GNU base-256 number, as Go's archive/tar reads it.
bool ParseNumeric(std::string_view b, int64_t* out) {
  if (!b.empty() && (static_cast<uint8_t>(b[0]) & 0x80)) {
    uint8_t inv = (static_cast<uint8_t>(b[0]) & 0x40) ? 0xff : 0;
    uint64_t x = 0;
    for (size_t i = 0; i < b.size(); ++i) {
      uint8_t c = static_cast<uint8_t>(b[i]) ^ inv;
      if (i == 0) c &= 0x7f;
      if ((x >> 56) != 0) return false;
      x = (x << 8) | c;
    }
    if ((x >> 63) != 0) return false;
    *out = inv ? ~static_cast<int64_t>(x) : static_cast<int64_t>(x);
    return true;
  }
  size_t start = 0, end = b.size();
  while (start < end && (b[start] == ' ' || b[start] == '\0')) ++start;
  while (end > start && (b[end - 1] == ' ' || b[end - 1] == '\0')) --end;
  uint64_t x = 0;
  for (size_t i = start; i < end; ++i) {
    if (b[i] < '0' || b[i] > '7') return false;
    if ((x >> 60) != 0) return false;
    x = (x << 3) | static_cast<uint64_t>(b[i] - '0');
  }
  if ((x >> 63) != 0) return false;
  *out = static_cast<int64_t>(x);
  return true;
}

bool ParseGoInt(std::string_view s, int64_t* out) {
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return false;
  uint64_t limit = neg ? uint64_t{1} << 63 : static_cast<uint64_t>(INT64_MAX);
  uint64_t x = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (x > (limit - d) / 10) return false;
    x = x * 10 + d;
  }
  *out = neg ? static_cast<int64_t>(0 - x) : static_cast<int64_t>(x);
  return true;
}

// PAX time as Go's parsePAXTime reads it: "[-]sec[.frac]", any number of fraction digits
// (truncated to nanoseconds); a negative time's fraction counts toward -inf: "-1.5" is
// sec = -2, nsec = 500000000.
bool ParsePaxTime(std::string_view s, int64_t* sec, uint32_t* nsec) {
  std::string_view whole = s, frac;
  if (size_t dot = s.find('.'); dot != std::string_view::npos) {
    whole = s.substr(0, dot);
    frac = s.substr(dot + 1);
  }
  int64_t w = 0;
  if (!ParseGoInt(whole, &w) || w == INT64_MIN) return false;
  uint32_t n = 0;
  for (size_t i = 0; i < frac.size(); ++i) {
    if (frac[i] < '0' || frac[i] > '9') return false;
    if (i < 9) n = n * 10 + static_cast<uint32_t>(frac[i] - '0');
  }
  for (size_t i = frac.size(); i < 9; ++i) n *= 10;
  bool neg = !whole.empty() && whole[0] == '-';
  if (!neg || n == 0) {
    *sec = w;
    *nsec = n;
  } else {
    *sec = w - 1;
    *nsec = 1000000000u - n;
  }
  return true;
}

// A PAX number that must fit [0, max].
bool ParsePaxUnsigned(std::string_view s, uint64_t max, uint64_t* out) {
  int64_t v = 0;
  if (!ParseGoInt(s, &v) || v < 0 || static_cast<uint64_t>(v) > max) return false;
  *out = static_cast<uint64_t>(v);
  return true;
}

bool PercentDecode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

// Go's parsePAX and parsePAXRecord, GNU sparse 0.0 records included.
Status ParsePaxRecords(std::string_view records, std::map<std::string, std::string>* out) {
  std::string sparse_map;
  size_t sparse_values = 0;
  while (!records.empty()) {
    size_t space = records.find(' ');
    int64_t n = 0;
    if (space == std::string_view::npos || !ParseGoInt(records.substr(0, space), &n) || n < 5 ||
        static_cast<uint64_t>(n) > records.size() || static_cast<uint64_t>(n) <= space + 1) {
      return Status::Corrupt("PAX record length is malformed or exceeds the header");
    }
    std::string_view record = records.substr(space + 1, static_cast<size_t>(n) - space - 1);
    records.remove_prefix(static_cast<size_t>(n));
    if (record.back() != '\n') return Status::Corrupt("PAX record does not end with a newline");
    record.remove_suffix(1);
    size_t eq = record.find('=');
    if (eq == std::string_view::npos || eq == 0) return Status::Corrupt("PAX record without a key");
    std::string_view key = record.substr(0, eq), value = record.substr(eq + 1);
    bool string_field = key == "path" || key == "linkpath" || key == "uname" || key == "gname";
    if ((string_field ? value : key).find('\0') != std::string_view::npos) {
      return Status::Corrupt("PAX record '" + AbbreviateName(key) + "' holds a NUL byte");
    }
    if (key == "GNU.sparse.offset" || key == "GNU.sparse.numbytes") {
      bool want_offset = sparse_values % 2 == 0;
      if (want_offset != (key == "GNU.sparse.offset") ||
          value.find(',') != std::string_view::npos) {
        return Status::Corrupt("GNU sparse 0.0 records are out of order");
      }
      if (sparse_values++) sparse_map.push_back(',');
      sparse_map.append(value);
      continue;
    }
    (*out)[std::string(key)] = std::string(value);
  }
  if (sparse_values) (*out)["GNU.sparse.map"] = std::move(sparse_map);
  return Status::Ok();
}

Status XattrsFromPax(const std::map<std::string, std::string>& pax,
                     std::vector<std::pair<std::string, std::string>>* out) {
  constexpr std::string_view kSchily = "SCHILY.xattr.";
  constexpr std::string_view kLibarchive = "LIBARCHIVE.xattr.";
  auto named = [](const std::string& key, std::string_view prefix) {
    return key.size() > prefix.size() && key.compare(0, prefix.size(), prefix) == 0;
  };
  std::map<std::string, std::string> xattrs;
  for (const auto& [key, value] : pax) {
    if (!value.empty() && named(key, kSchily)) xattrs[key.substr(kSchily.size())] = value;
  }
  for (const auto& [key, value] : pax) {
    if (value.empty() || !named(key, kLibarchive)) continue;
    std::string name;
    std::optional<std::string> decoded = DecodeBase64(value);
    if (!PercentDecode(std::string_view(key).substr(kLibarchive.size()), &name) || !decoded) {
      return Status::Corrupt("bad LIBARCHIVE.xattr record");
    }
    xattrs.emplace(std::move(name), std::move(*decoded));  // SCHILY's wins
  }
  out->assign(std::make_move_iterator(xattrs.begin()), std::make_move_iterator(xattrs.end()));
  return Status::Ok();
}

}  // namespace imgfs::fs
