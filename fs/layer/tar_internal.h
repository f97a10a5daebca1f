// What the tar reader's files share (not for use outside fs/layer): the ustar header block's
// layout (POSIX, with star's and old GNU's variants) and the sparse member whose map is still
// being read. tar.cc holds the stream (blocks, extension headers), tar_member.cc turns one
// header into an Entry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fs/layer/layer_index.h"
#include "fs/layer/tar.h"
#include "fs/layer/tar_sparse.h"

namespace imgfs::fs {
namespace ustar {

inline constexpr size_t kBlock = 512;
// Keeps offset arithmetic far from overflow.
inline constexpr uint64_t kMaxSize = uint64_t{1} << 56;

struct Field {
  size_t off;
  size_t len;
  const char* name;
};
inline constexpr Field kName{0, 100, "name"};
inline constexpr Field kMode{100, 8, "mode"};
inline constexpr Field kUid{108, 8, "uid"};
inline constexpr Field kGid{116, 8, "gid"};
inline constexpr Field kSize{124, 12, "size"};
inline constexpr Field kMtime{136, 12, "mtime"};
inline constexpr Field kChksum{148, 8, "checksum"};
inline constexpr size_t kTypeflag = 156;
inline constexpr Field kLinkname{157, 100, "linkname"};
inline constexpr Field kMagic{257, 6, "magic"};
inline constexpr Field kVersion{263, 2, "version"};
inline constexpr Field kDevmajor{329, 8, "devmajor"};
inline constexpr Field kDevminor{337, 8, "devminor"};
inline constexpr Field kPrefix{345, 155, "prefix"};
inline constexpr Field kStarPrefix{345, 131, "prefix"};
// Old GNU: 4 sparse entries, then isextended, realsize.
inline constexpr size_t kGnuSparse = 386;
inline constexpr size_t kGnuIsExtended = 482;
inline constexpr Field kGnuRealSize{483, 12, "realsize"};

inline std::string_view FieldBytes(const uint8_t* h, Field f) {
  return std::string_view(reinterpret_cast<const char*>(h) + f.off, f.len);
}

// NUL-terminated string field.
inline std::string CString(const uint8_t* h, Field f) {
  std::string_view s = FieldBytes(h, f);
  size_t nul = s.find('\0');
  return std::string(s.substr(0, nul));
}

inline bool IsZeroBlock(const uint8_t* h) {
  for (size_t i = 0; i < kBlock; ++i) {
    if (h[i] != 0) return false;
  }
  return true;
}

inline uint64_t Padding(uint64_t size) { return (kBlock - size % kBlock) % kBlock; }

}  // namespace ustar

struct TarReader::PendingSparse {
  Entry entry;
  uint64_t header_offset = 0;
  uint64_t logical = 0;   // the file's size, holes included
  uint64_t physical = 0;  // bytes stored in the member (after the 1.0 map once it is read)
  uint64_t map_bytes = 0;
  bool dropped = false;  // IsDroppedName: read past, never delivered
  std::vector<SparseRegion> regions;
  SparseMap10 map10;
};

}  // namespace imgfs::fs
