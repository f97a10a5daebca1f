#include "fs/layer/tar.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

#include "base/base64.h"
#include "base/log.h"

namespace imgfs::fs {
namespace {

constexpr size_t kBlock = 512;
// No real name, link or xattr set comes near these; they bound memory on hostile input.
constexpr uint64_t kMaxLongName = 1 << 20;
constexpr uint64_t kMaxPaxData = 16 << 20;
// Keeps offset arithmetic far from overflow.
constexpr uint64_t kMaxSize = uint64_t{1} << 56;

struct Field {
  size_t off;
  size_t len;
  const char* name;
};
constexpr Field kName{0, 100, "name"};
constexpr Field kMode{100, 8, "mode"};
constexpr Field kUid{108, 8, "uid"};
constexpr Field kGid{116, 8, "gid"};
constexpr Field kSize{124, 12, "size"};
constexpr Field kMtime{136, 12, "mtime"};
constexpr Field kChksum{148, 8, "checksum"};
constexpr size_t kTypeflag = 156;
constexpr Field kLinkname{157, 100, "linkname"};
constexpr Field kMagic{257, 6, "magic"};
constexpr Field kVersion{263, 2, "version"};
constexpr Field kDevmajor{329, 8, "devmajor"};
constexpr Field kDevminor{337, 8, "devminor"};
constexpr Field kPrefix{345, 155, "prefix"};

std::string_view FieldBytes(const uint8_t* h, Field f) {
  return std::string_view(reinterpret_cast<const char*>(h) + f.off, f.len);
}

// NUL-terminated string field.
std::string CString(const uint8_t* h, Field f) {
  std::string_view s = FieldBytes(h, f);
  size_t nul = s.find('\0');
  return std::string(s.substr(0, nul));
}

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

bool ParseDecimal(std::string_view s, uint64_t max, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t x = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (x > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    x = x * 10 + d;
  }
  if (x > max) return false;
  *out = x;
  return true;
}

// PAX time: "[-]sec[.frac]". Negative times with a fraction round toward -inf as POSIX says:
// "-1.5" is sec = -2, nsec = 500000000.
bool ParsePaxTime(std::string_view s, int64_t* sec, uint32_t* nsec) {
  bool neg = !s.empty() && s[0] == '-';
  if (neg) s.remove_prefix(1);
  std::string_view whole = s, frac;
  if (size_t dot = s.find('.'); dot != std::string_view::npos) {
    whole = s.substr(0, dot);
    frac = s.substr(dot + 1);
  }
  uint64_t w = 0;
  if (!ParseDecimal(whole, static_cast<uint64_t>(std::numeric_limits<int64_t>::max() - 1), &w)) {
    return false;
  }
  uint32_t n = 0;
  for (size_t i = 0; i < frac.size(); ++i) {
    if (frac[i] < '0' || frac[i] > '9') return false;
    if (i < 9) n = n * 10 + static_cast<uint32_t>(frac[i] - '0');
  }
  for (size_t i = frac.size(); i < 9; ++i) n *= 10;
  if (!neg) {
    *sec = static_cast<int64_t>(w);
    *nsec = n;
  } else if (n == 0) {
    *sec = -static_cast<int64_t>(w);
    *nsec = 0;
  } else {
    *sec = -static_cast<int64_t>(w) - 1;
    *nsec = 1000000000u - n;
  }
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

bool IsZeroBlock(const uint8_t* h) {
  for (size_t i = 0; i < kBlock; ++i) {
    if (h[i] != 0) return false;
  }
  return true;
}

uint64_t Padding(uint64_t size) { return (kBlock - size % kBlock) % kBlock; }

constexpr std::string_view kSchilyXattr = "SCHILY.xattr.";
constexpr std::string_view kLibarchiveXattr = "LIBARCHIVE.xattr.";

}  // namespace

TarReader::TarReader(EntrySink sink) : sink_(std::move(sink)) {}

Status TarReader::Fail(uint64_t at, std::string message) {
  error_ = Status::Corrupt("tar stream at offset " + std::to_string(at) + ": " + message);
  return error_;
}

Status TarReader::Feed(std::string_view bytes) {
  if (!error_.ok()) return error_;
  size_t i = 0;
  while (i < bytes.size()) {
    size_t avail = bytes.size() - i;
    switch (state_) {
      case State::kEnd:
        offset_ += avail;
        return Status::Ok();
      case State::kSkip: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(skip_remaining_, avail));
        skip_remaining_ -= take;
        offset_ += take;
        i += take;
        if (skip_remaining_ == 0) state_ = State::kHeader;
        break;
      }
      case State::kCollect: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(collect_remaining_, avail));
        collect_.append(bytes.data() + i, take);
        collect_remaining_ -= take;
        offset_ += take;
        i += take;
        if (collect_remaining_ == 0) {
          Status s = FinishCollect();
          if (!s.ok()) {
            if (error_.ok()) error_ = s;
            return error_;
          }
        }
        break;
      }
      case State::kHeader: {
        if (header_fill_ == 0) header_offset_ = offset_;
        size_t take = std::min(kBlock - header_fill_, avail);
        std::memcpy(header_ + header_fill_, bytes.data() + i, take);
        header_fill_ += take;
        offset_ += take;
        i += take;
        if (header_fill_ == kBlock) {
          header_fill_ = 0;
          Status s = ProcessHeader();
          if (!s.ok()) {
            if (error_.ok()) error_ = s;
            return error_;
          }
        }
        break;
      }
    }
  }
  return Status::Ok();
}

Status TarReader::Finish() {
  if (!error_.ok()) return error_;
  switch (state_) {
    case State::kEnd:
      return Status::Ok();
    case State::kHeader:
      if (header_fill_ == 0) {
        if (gnu_long_name_ || gnu_long_link_ || !pax_local_.empty()) {
          return Fail(offset_, "archive ends right after an extended header");
        }
        return Status::Ok();
      }
      return Fail(offset_, "archive ends inside a header block");
    case State::kSkip:
    case State::kCollect:
      return Fail(offset_, "archive ends inside a member's data");
  }
  return Status::Ok();
}

Status TarReader::ProcessHeader() {
  const uint8_t* h = header_;
  uint64_t at = header_offset_;
  if (IsZeroBlock(h)) {
    if (zero_block_seen_) {
      state_ = State::kEnd;
    } else {
      zero_block_seen_ = true;
    }
    return Status::Ok();
  }
  if (zero_block_seen_) {
    return Fail(at, "a header follows a single end-of-archive block");
  }

  int64_t stored_sum = 0;
  if (!ParseNumeric(FieldBytes(h, kChksum), &stored_sum)) {
    return Fail(at, "header checksum field is not a number (not a tar archive?)");
  }
  int64_t unsigned_sum = 0, signed_sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    bool in_chksum = i >= kChksum.off && i < kChksum.off + kChksum.len;
    uint8_t c = in_chksum ? ' ' : h[i];
    unsigned_sum += c;
    signed_sum += static_cast<int8_t>(c);
  }
  if (stored_sum != unsigned_sum && stored_sum != signed_sum) {
    return Fail(at, "header checksum mismatch");
  }

  char typeflag = static_cast<char>(h[kTypeflag]);
  int64_t size = 0;
  if (!ParseNumeric(FieldBytes(h, kSize), &size)) return Fail(at, "bad number in size field");
  if (size < 0 || static_cast<uint64_t>(size) > kMaxSize) return Fail(at, "size out of range");
  uint64_t usize = static_cast<uint64_t>(size);

  switch (typeflag) {
    case 'x':
    case 'g':
    case 'L':
    case 'K': {
      uint64_t limit = (typeflag == 'L' || typeflag == 'K') ? kMaxLongName : kMaxPaxData;
      if (usize > limit) {
        return Fail(at, std::string("extended header '") + typeflag + "' of " +
                            std::to_string(usize) + " bytes is implausibly large");
      }
      collect_.clear();
      collect_.reserve(usize);
      collect_remaining_ = usize;
      collect_padding_ = Padding(usize);
      collect_type_ = typeflag;
      collect_offset_ = at;
      state_ = State::kCollect;
      if (usize == 0) return FinishCollect();
      return Status::Ok();
    }
    default:
      break;
  }
  return EmitEntry(h, typeflag, at);
}

Status TarReader::FinishCollect() {
  std::string data = std::move(collect_);
  collect_.clear();
  skip_remaining_ = collect_padding_;
  state_ = skip_remaining_ ? State::kSkip : State::kHeader;
  switch (collect_type_) {
    case 'L':
    case 'K': {
      size_t nul = data.find('\0');
      if (nul != std::string::npos) data.resize(nul);
      (collect_type_ == 'L' ? gnu_long_name_ : gnu_long_link_) = std::move(data);
      return Status::Ok();
    }
    case 'x':
      return ApplyPax(data, /*global=*/false);
    case 'g':
      return ApplyPax(data, /*global=*/true);
  }
  return Status::Ok();
}

Status TarReader::ApplyPax(std::string_view records, bool global) {
  uint64_t at = collect_offset_;
  auto& target = global ? pax_global_ : pax_local_;
  while (!records.empty()) {
    size_t space = records.find(' ');
    uint64_t len = 0;
    if (space == std::string_view::npos || space == 0 ||
        !ParseDecimal(records.substr(0, space), records.size(), &len) || len <= space + 1) {
      return Fail(at, "PAX record length is malformed or exceeds the header");
    }
    std::string_view record = records.substr(0, len);
    records.remove_prefix(len);
    if (record.back() != '\n') return Fail(at, "PAX record does not end with a newline");
    std::string_view kv = record.substr(space + 1, len - space - 2);
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos || eq == 0) return Fail(at, "PAX record without a key");
    std::string key(kv.substr(0, eq));
    std::string value(kv.substr(eq + 1));
    if (key.rfind("GNU.sparse.", 0) == 0) {
      error_ = Status::Unsupported("tar stream at offset " + std::to_string(at) +
                                   ": GNU sparse files are not supported");
      return error_;
    }
    if (global && (key == "path" || key == "linkpath" || key == "size")) continue;
    // An empty value removes the key (POSIX: "the corresponding field is deleted").
    if (value.empty() && global) {
      target.erase(key);
    } else {
      target[key] = std::move(value);
    }
  }
  return Status::Ok();
}

Status TarReader::EmitEntry(const uint8_t* h, char typeflag, uint64_t at) {
  // Extension records apply to this member only, whatever happens next.
  std::map<std::string, std::string> pax = pax_global_;
  for (auto& [k, v] : pax_local_) pax[k] = std::move(v);
  pax_local_.clear();
  std::optional<std::string> long_name = std::move(gnu_long_name_);
  std::optional<std::string> long_link = std::move(gnu_long_link_);
  gnu_long_name_.reset();
  gnu_long_link_.reset();
  auto pax_value = [&pax](const char* key) -> const std::string* {
    auto it = pax.find(key);
    return it == pax.end() || it->second.empty() ? nullptr : &it->second;
  };

  int64_t size = 0, mode = 0, uid = 0, gid = 0, mtime = 0, devmajor = 0, devminor = 0;
  ParseNumeric(FieldBytes(h, kSize), &size);  // checked by ProcessHeader
  if (!ParseNumeric(FieldBytes(h, kMode), &mode)) return Fail(at, "bad number in mode field");
  if (!ParseNumeric(FieldBytes(h, kUid), &uid) || uid < 0 || uid > UINT32_MAX) {
    return Fail(at, "bad number in uid field");
  }
  if (!ParseNumeric(FieldBytes(h, kGid), &gid) || gid < 0 || gid > UINT32_MAX) {
    return Fail(at, "bad number in gid field");
  }
  if (!ParseNumeric(FieldBytes(h, kMtime), &mtime)) return Fail(at, "bad number in mtime field");

  std::string_view magic = FieldBytes(h, kMagic);
  std::string_view version = FieldBytes(h, kVersion);
  bool ustar = magic == std::string_view("ustar\0", 6) && version == "00";
  bool gnu = magic == "ustar " && version == std::string_view(" \0", 2);
  if ((ustar || gnu) && (typeflag == '3' || typeflag == '4')) {
    if (!ParseNumeric(FieldBytes(h, kDevmajor), &devmajor) || devmajor < 0 ||
        devmajor > UINT32_MAX || !ParseNumeric(FieldBytes(h, kDevminor), &devminor) ||
        devminor < 0 || devminor > UINT32_MAX) {
      return Fail(at, "bad device number");
    }
  }

  uint64_t usize = static_cast<uint64_t>(size);
  if (const std::string* v = pax_value("size")) {
    if (!ParseDecimal(*v, kMaxSize, &usize)) return Fail(at, "bad PAX size");
  }
  Entry e;
  e.mode = static_cast<uint32_t>(mode) & 07777;
  e.uid = static_cast<uint32_t>(uid);
  e.gid = static_cast<uint32_t>(gid);
  e.mtime_sec = mtime;
  if (const std::string* v = pax_value("uid")) {
    uint64_t x;
    if (!ParseDecimal(*v, UINT32_MAX, &x)) return Fail(at, "bad PAX uid");
    e.uid = static_cast<uint32_t>(x);
  }
  if (const std::string* v = pax_value("gid")) {
    uint64_t x;
    if (!ParseDecimal(*v, UINT32_MAX, &x)) return Fail(at, "bad PAX gid");
    e.gid = static_cast<uint32_t>(x);
  }
  if (const std::string* v = pax_value("mtime")) {
    if (!ParsePaxTime(*v, &e.mtime_sec, &e.mtime_nsec)) return Fail(at, "bad PAX mtime");
  }
  for (const auto& [key, value] : pax) {
    // POSIX: a record with an empty value deletes the keyword. Go's archive/tar, which docker,
    // containerd and umoci extract with, drops such xattrs; an image must look the same here.
    if (value.empty()) continue;
    if (key.compare(0, kSchilyXattr.size(), kSchilyXattr) == 0 &&
        key.size() > kSchilyXattr.size()) {
      e.xattrs.emplace_back(key.substr(kSchilyXattr.size()), value);
    } else if (key.compare(0, kLibarchiveXattr.size(), kLibarchiveXattr) == 0 &&
               key.size() > kLibarchiveXattr.size()) {
      std::string name;
      std::optional<std::string> decoded = DecodeBase64(value);
      if (!PercentDecode(std::string_view(key).substr(kLibarchiveXattr.size()), &name) ||
          !decoded) {
        return Fail(at, "bad LIBARCHIVE.xattr record");
      }
      // SCHILY wins when a writer emits both forms of one attribute.
      bool dup = std::any_of(e.xattrs.begin(), e.xattrs.end(),
                             [&](const auto& x) { return x.first == name; }) ||
                 pax.count(std::string(kSchilyXattr) + name);
      if (!dup) e.xattrs.emplace_back(std::move(name), std::move(*decoded));
    }
  }

  std::string name;
  if (const std::string* v = pax_value("path")) {
    name = *v;
  } else if (long_name) {
    name = *long_name;
  } else {
    name = CString(h, kName);
    std::string prefix = ustar ? CString(h, kPrefix) : std::string();
    if (!prefix.empty()) name = prefix + "/" + name;
  }
  std::string link;
  if (const std::string* v = pax_value("linkpath")) {
    link = *v;
  } else if (long_link) {
    link = *long_link;
  } else {
    link = CString(h, kLinkname);
  }

  bool has_data = false;  // whether content bytes follow the header
  switch (typeflag) {
    case '0':
    case '7':
      e.type = EntryType::kRegular;
      has_data = true;
      break;
    case '\0':
      // V7 had no directory type: a trailing slash marked one.
      if (!name.empty() && name.back() == '/') {
        e.type = EntryType::kDirectory;
      } else {
        e.type = EntryType::kRegular;
        has_data = true;
      }
      break;
    case '1':
      e.type = EntryType::kHardlink;
      break;
    case '2':
      e.type = EntryType::kSymlink;
      break;
    case '3':
      e.type = EntryType::kCharDevice;
      break;
    case '4':
      e.type = EntryType::kBlockDevice;
      break;
    case '5':
      e.type = EntryType::kDirectory;
      break;
    case '6':
      e.type = EntryType::kFifo;
      break;
    case 'D':  // GNU dumpdir: a directory whose data lists its contents
      e.type = EntryType::kDirectory;
      break;
    case 'S':
      error_ = Status::Unsupported("tar stream at offset " + std::to_string(at) + ": '" + name +
                                   "' is a GNU sparse file, which is not supported");
      return error_;
    default:
      IMGFS_LOG(kWarning, "tar member '" << name << "' at offset " << at << " has type "
                                         << static_cast<int>(static_cast<uint8_t>(typeflag))
                                         << ", which is skipped");
      skip_remaining_ = usize + Padding(usize);
      state_ = skip_remaining_ ? State::kSkip : State::kHeader;
      return Status::Ok();
  }
  // Typeflag 'D' and friends carry data that is not file content; skip it too.
  uint64_t data_len = has_data || typeflag == 'D' ? usize : 0;
  skip_remaining_ = data_len + Padding(data_len);
  state_ = skip_remaining_ ? State::kSkip : State::kHeader;
  uint64_t data_offset = at + kBlock;

  Result<std::string> clean = CleanPath(name);
  if (!clean.ok()) return Fail(at, clean.status().message());
  e.path = std::move(clean).value();
  e.size = e.type == EntryType::kRegular ? usize : 0;
  if (e.type == EntryType::kHardlink) {
    Result<std::string> target = CleanPath(link);
    if (!target.ok()) return Fail(at, "hard link target: " + target.status().message());
    if (target->empty()) return Fail(at, "hard link '" + e.path + "' has no target");
    e.link_target = std::move(target).value();
  } else if (e.type == EntryType::kSymlink) {
    e.link_target = std::move(link);
  }
  e.dev_major = static_cast<uint32_t>(devmajor);
  e.dev_minor = static_cast<uint32_t>(devminor);
  // Markers have no content of their own, whatever size the writer gave the marker file.
  if (!e.path.empty() && ApplyWhiteoutName(&e)) e.size = 0;
  return sink_(std::move(e), data_offset);
}

}  // namespace imgfs::fs
