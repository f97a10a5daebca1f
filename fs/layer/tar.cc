#include "fs/layer/tar.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "fs/layer/tar_fields.h"
#include "fs/layer/tar_internal.h"

namespace imgfs::fs {
namespace {

using ustar::FieldBytes;
using ustar::IsZeroBlock;
using ustar::kBlock;
using ustar::kChksum;
using ustar::kMaxSize;
using ustar::kSize;
using ustar::kTypeflag;
using ustar::Padding;

// Go's maxSpecialFileSize: the most an 'x', 'g', 'L' or 'K' header may hold.
constexpr uint64_t kMaxExtendedHeader = 1 << 20;

}  // namespace

TarReader::TarReader(EntrySink sink) : sink_(std::move(sink)) {}
TarReader::~TarReader() = default;

Status TarReader::Fail(uint64_t at, const std::string& message) {
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
      case State::kHeader:
      case State::kSparseExt:
      case State::kSparseMap: {
        if (header_fill_ == 0) header_offset_ = offset_;
        size_t take = std::min(kBlock - header_fill_, avail);
        std::memcpy(header_ + header_fill_, bytes.data() + i, take);
        header_fill_ += take;
        offset_ += take;
        i += take;
        if (header_fill_ == kBlock) {
          header_fill_ = 0;
          Status s = state_ == State::kHeader ? ProcessHeader() : ProcessSparseBlock();
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
      // Extension records with no member after them are dropped, as Go's reader drops them.
      if (header_fill_ == 0) return Status::Ok();
      return Fail(offset_, "archive ends inside a header block");
    case State::kSparseExt:
    case State::kSparseMap:
      return Fail(offset_, "archive ends inside a sparse member's map");
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

  // Solaris 'X' is an 'x' header by another name: GNU tar and bsdtar read it so.
  if (typeflag == 'X') typeflag = 'x';
  switch (typeflag) {
    case 'x':
    case 'g':
    case 'L':
    case 'K': {
      if (usize > kMaxExtendedHeader) {
        return Fail(at, std::string("extended header '") + typeflag + "' of " +
                            std::to_string(usize) + " bytes is larger than the limit of " +
                            std::to_string(kMaxExtendedHeader));
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
    case 'x': {
      // Only the last 'x' header before a member counts (Go replaces its records).
      std::map<std::string, std::string> records;
      if (Status s = ParsePaxRecords(data, &records); !s.ok())
        return Fail(collect_offset_, s.message());
      pax_local_ = std::move(records);
      return Status::Ok();
    }
    case 'g': {
      // Checked, then ignored as docker ignores it; Go returns it as a member of its own, so
      // the extension records before it apply to nothing.
      std::map<std::string, std::string> records;
      if (Status s = ParsePaxRecords(data, &records); !s.ok())
        return Fail(collect_offset_, s.message());
      pax_local_.clear();
      gnu_long_name_.reset();
      gnu_long_link_.reset();
      return Status::Ok();
    }
  }
  return Status::Ok();
}
Status TarReader::Deliver(Entry entry, uint64_t data_offset) {
  return sink_(std::move(entry), data_offset);
}

}  // namespace imgfs::fs
