// TarReader: one member's header, with its PAX and GNU extension records, into an Entry; and
// the sparse members whose map follows the header (old GNU extension blocks, PAX 1.0).
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "base/log.h"
#include "fs/layer/tar.h"
#include "fs/layer/tar_fields.h"
#include "fs/layer/tar_internal.h"
#include "fs/layer/tar_sparse.h"

namespace imgfs::fs {
namespace {

using ustar::CString;
using ustar::FieldBytes;
using ustar::kBlock;
using ustar::kDevmajor;
using ustar::kDevminor;
using ustar::kGid;
using ustar::kGnuIsExtended;
using ustar::kGnuRealSize;
using ustar::kGnuSparse;
using ustar::kLinkname;
using ustar::kMagic;
using ustar::kMaxSize;
using ustar::kMode;
using ustar::kMtime;
using ustar::kName;
using ustar::kPrefix;
using ustar::kSize;
using ustar::kStarPrefix;
using ustar::kUid;
using ustar::kVersion;
using ustar::Padding;

}  // namespace

Status TarReader::EmitEntry(const uint8_t* h, char typeflag, uint64_t at) {
  // Extension records apply to this member only, whatever happens next.
  std::map<std::string, std::string> pax = std::move(pax_local_);
  pax_local_.clear();
  std::optional<std::string> long_name = std::move(gnu_long_name_);
  std::optional<std::string> long_link = std::move(gnu_long_link_);
  gnu_long_name_.reset();
  gnu_long_link_.reset();
  // Go's mergePAX: a record with an empty value keeps the header's field.
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

  // Go's getFormat: "ustar\0" whatever the version (star when the block ends in "tar\0").
  std::string_view magic = FieldBytes(h, kMagic);
  bool ustar = magic == std::string_view("ustar\0", 6);
  bool star = ustar && std::memcmp(h + 508, "tar\0", 4) == 0;
  bool gnu = magic == "ustar " && FieldBytes(h, kVersion) == std::string_view(" \0", 2);
  if ((ustar || gnu) && (typeflag == '3' || typeflag == '4')) {
    if (!ParseNumeric(FieldBytes(h, kDevmajor), &devmajor) || devmajor < 0 ||
        devmajor > UINT32_MAX || !ParseNumeric(FieldBytes(h, kDevminor), &devminor) ||
        devminor < 0 || devminor > UINT32_MAX) {
      return Fail(at, "bad device number");
    }
  }

  uint64_t usize = static_cast<uint64_t>(size);
  if (const std::string* v = pax_value("size")) {
    if (!ParsePaxUnsigned(*v, kMaxSize, &usize)) return Fail(at, "bad PAX size");
  }
  Entry e;
  e.mode = static_cast<uint32_t>(mode) & 07777;
  e.uid = static_cast<uint32_t>(uid);
  e.gid = static_cast<uint32_t>(gid);
  e.mtime_sec = mtime;
  uint64_t x = 0;
  if (const std::string* v = pax_value("uid")) {
    if (!ParsePaxUnsigned(*v, UINT32_MAX, &x)) return Fail(at, "bad PAX uid");
    e.uid = static_cast<uint32_t>(x);
  }
  if (const std::string* v = pax_value("gid")) {
    if (!ParsePaxUnsigned(*v, UINT32_MAX, &x)) return Fail(at, "bad PAX gid");
    e.gid = static_cast<uint32_t>(x);
  }
  if (const std::string* v = pax_value("mtime")) {
    if (!ParsePaxTime(*v, &e.mtime_sec, &e.mtime_nsec)) return Fail(at, "bad PAX mtime");
  }
  if (Status s = XattrsFromPax(pax, &e.xattrs); !s.ok()) return Fail(at, s.message());

  // Go: the header's name, then PAX path, then a GNU long name; the same for the link.
  std::string name = CString(h, kName);
  if (ustar) {
    std::string prefix = CString(h, star ? kStarPrefix : kPrefix);
    if (!prefix.empty()) name = prefix + "/" + name;
  }
  if (const std::string* v = pax_value("path")) name = *v;
  if (long_name && !long_name->empty()) name = std::move(*long_name);
  std::string link = CString(h, kLinkname);
  if (const std::string* v = pax_value("linkpath")) link = *v;
  if (long_link && !long_link->empty()) link = std::move(*long_link);

  bool has_data = false;  // whether content bytes follow the header
  switch (typeflag) {
    case '0':
    case '7':
    case 'S':  // old GNU sparse: a regular file whose map is in the header
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
    default:
      IMGFS_LOG(kWarning, "tar member '" << AbbreviateName(name) << "' at offset " << at
                                         << " has type "
                                         << static_cast<int>(static_cast<uint8_t>(typeflag))
                                         << ", which is skipped");
      skip_remaining_ = usize + Padding(usize);
      state_ = skip_remaining_ ? State::kSkip : State::kHeader;
      return Status::Ok();
  }
  // Typeflag 'D' carries data that is not file content; skip it too.
  uint64_t data_len = has_data || typeflag == 'D' ? usize : 0;
  skip_remaining_ = data_len + Padding(data_len);
  state_ = skip_remaining_ ? State::kSkip : State::kHeader;
  uint64_t data_offset = at + kBlock;

  // GNU sparse (Go's readGNUSparsePAXHeaders): which form, if any.
  enum { kNotSparse, kOldGnu, kPax0, kPax1 } sparse = kNotSparse;
  uint64_t logical = usize;
  if (typeflag == 'S') {
    if (!gnu) return Fail(at, "sparse member 'S' in a header that is not GNU");
    int64_t real = 0;
    if (!ParseNumeric(FieldBytes(h, kGnuRealSize), &real) || real < 0) {
      return Fail(at, "bad number in the GNU sparse real size");
    }
    logical = static_cast<uint64_t>(real);
    sparse = kOldGnu;
  } else {
    auto record = [&pax](const char* key) {
      auto it = pax.find(key);
      return it == pax.end() ? std::string() : it->second;
    };
    std::string major = record("GNU.sparse.major"), minor = record("GNU.sparse.minor");
    if (major == "0" && (minor == "0" || minor == "1")) {
      sparse = kPax0;
    } else if (major == "1" && minor == "0") {
      sparse = kPax1;
    } else if (major.empty() && minor.empty() && !record("GNU.sparse.map").empty()) {
      sparse = kPax0;
    }
    if (sparse != kNotSparse) {
      if (std::string n = record("GNU.sparse.name"); !n.empty()) name = n;
      std::string sz = record("GNU.sparse.size");
      if (sz.empty()) sz = record("GNU.sparse.realsize");
      if (!sz.empty() && !ParsePaxUnsigned(sz, kMaxSize, &logical)) {
        return Fail(at, "bad GNU sparse size");
      }
    }
  }
  if (sparse != kNotSparse && e.type != EntryType::kRegular) {
    return Fail(at, "a member without data has a sparse map");
  }

  Result<std::string> clean = CleanPath(name);
  if (!clean.ok()) return Fail(at, clean.status().message());
  e.path = std::move(clean).value();
  e.size = e.type == EntryType::kRegular ? logical : 0;
  if (e.type == EntryType::kHardlink) {
    Result<std::string> target = CleanPath(link);
    if (!target.ok()) return Fail(at, "hard link target: " + target.status().message());
    if (target->empty()) return Fail(at, "hard link '" + e.path + "' has no target");
    e.link_target = std::move(target).value();
  } else if (e.type == EntryType::kSymlink) {
    if (link.size() > kMaxPathLength) {
      return Fail(at, "symlink '" + e.path + "' has a target of " + std::to_string(link.size()) +
                          " bytes, longer than PATH_MAX (" + std::to_string(kMaxPathLength) + ")");
    }
    e.link_target = std::move(link);
  }
  e.dev_major = static_cast<uint32_t>(devmajor);
  e.dev_minor = static_cast<uint32_t>(devminor);
  if (Status s = ValidateXattrs(e); !s.ok()) return Fail(at, s.message());
  bool dropped = IsDroppedName(e.path);
  if (dropped) {
    IMGFS_LOG(kWarning, "tar member '" << e.path << "' at offset " << at
                                       << " is not extracted by docker either; dropping it");
  }
  // Markers have no content of their own, whatever size the writer gave the marker file.
  if (!dropped && !e.path.empty() && ApplyWhiteoutName(&e)) e.size = 0;
  if (sparse == kNotSparse) return dropped ? Status::Ok() : Deliver(std::move(e), data_offset);

  sparse_ = std::make_unique<PendingSparse>();
  PendingSparse& p = *sparse_;
  p.entry = std::move(e);
  p.header_offset = at;
  p.logical = logical;
  p.physical = usize;
  p.dropped = dropped;
  switch (sparse) {
    case kOldGnu: {
      if (Status s = ParseOldGnuSparse(h + kGnuSparse, 4, &p.regions); !s.ok()) {
        return Fail(at, s.message());
      }
      if (h[kGnuIsExtended] != 0) {
        state_ = State::kSparseExt;
        return Status::Ok();
      }
      return DeliverSparse(data_offset);
    }
    case kPax0: {
      auto numblocks = pax.find("GNU.sparse.numblocks");
      Status s = ParsePaxSparseMap(numblocks == pax.end() ? "" : numblocks->second,
                                   pax["GNU.sparse.map"], &p.regions);
      if (!s.ok()) return Fail(at, s.message());
      return DeliverSparse(data_offset);
    }
    default:
      state_ = State::kSparseMap;
      return Status::Ok();
  }
}

Status TarReader::ProcessSparseBlock() {
  PendingSparse& p = *sparse_;
  if (state_ == State::kSparseExt) {
    // An old GNU extension block: 21 more entries, then its own "is extended" byte.
    if (Status s = ParseOldGnuSparse(header_, 21, &p.regions); !s.ok()) {
      return Fail(header_offset_, s.message());
    }
    if (header_[504] != 0) return Status::Ok();
    return DeliverSparse(offset_);
  }
  if (p.map_bytes + kBlock > p.physical) {
    return Fail(p.header_offset, "GNU sparse 1.0 map runs past the member's data");
  }
  p.map_bytes += kBlock;
  if (Status s = p.map10.FeedBlock(header_); !s.ok()) return Fail(p.header_offset, s.message());
  if (!p.map10.done()) return Status::Ok();
  p.regions = p.map10.TakeRegions();
  p.physical -= p.map_bytes;
  return DeliverSparse(offset_);
}

Status TarReader::DeliverSparse(uint64_t data_offset) {
  std::unique_ptr<PendingSparse> p = std::move(sparse_);
  // The 1.0 map took whole blocks, so the padding is the same as for the whole member.
  skip_remaining_ = p->physical + Padding(p->physical);
  state_ = skip_remaining_ ? State::kSkip : State::kHeader;
  Entry& e = p->entry;
  if (p->dropped) return Status::Ok();
  // A whiteout marker's data means nothing.
  if (e.whiteout || e.opaque) return Deliver(std::move(e), data_offset);
  if (Status s = SparseChunks(p->regions, p->logical, p->physical, &e.chunks); !s.ok()) {
    return Fail(p->header_offset, "sparse member '" + e.path + "': " + s.message());
  }
  return Deliver(std::move(e), data_offset);
}

}  // namespace imgfs::fs
