// Byte layout (docs/index-format.md):
//   "IMGFSSIX"          8-byte magic
//   version             one byte, currently 1; any other is kCorrupt ("unknown version")
//   zstd frame          exactly one, with its decompressed size in the frame header
// decompressed:
//   layer digest, diff_id (strings: LEB128 length + bytes), then the LayerIndex body of
//   SerializeLayerIndexBody (fs/layer/layer_index.cc).
#include "fs/layer/shared_index.h"

#include <zstd.h>

#include "base/digest.h"

namespace imgfs::fs {
namespace {

constexpr std::string_view kMagic = "IMGFSSIX";
constexpr uint8_t kVersion = 1;
constexpr int kLevel = 3;

void PutStr(std::string* out, std::string_view s) {
  uint64_t v = s.size();
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
  out->append(s);
}

// Reads a string written by PutStr at *pos; false when it does not fit.
bool GetStr(std::string_view in, size_t* pos, std::string* s) {
  uint64_t len = 0;
  for (int shift = 0;; shift += 7) {
    if (shift > 28 || *pos >= in.size()) return false;  // names and digests are short
    uint8_t b = static_cast<uint8_t>(in[(*pos)++]);
    len |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  if (len > in.size() - *pos) return false;
  s->assign(in.substr(*pos, len));
  *pos += len;
  return true;
}

bool IsStreamedFormat(std::string_view format) { return format == "gzip" || format == "tar"; }

}  // namespace

Result<std::string> EncodeSharedIndex(const LayerIndex& index) {
  if (!IsStreamedFormat(index.format)) {
    return Status::InvalidArgument("layer " + index.blob_digest + " is " + index.format +
                                   "; only gzip and tar layer indexes are shared");
  }
  if (index.diff_id.empty()) {
    return Status::InvalidArgument("layer " + index.blob_digest + " has no diff_id recorded");
  }
  std::string payload;
  PutStr(&payload, index.blob_digest);
  PutStr(&payload, index.diff_id);
  IMGFS_ASSIGN_OR_RETURN(std::string body, SerializeLayerIndexBody(index));
  payload += body;
  if (payload.size() > kMaxSharedIndexBodyBytes) {
    return Status::InvalidArgument("the index of layer " + index.blob_digest + " is " +
                                   std::to_string(payload.size()) +
                                   " bytes, above the shared index limit");
  }
  std::string out(kMagic);
  out.push_back(static_cast<char>(kVersion));
  const size_t head = out.size();
  out.resize(head + ZSTD_compressBound(payload.size()));
  size_t n = ZSTD_compress(out.data() + head, out.size() - head, payload.data(), payload.size(),
                           kLevel);
  if (ZSTD_isError(n)) {
    return Status::Internal(std::string("zstd compression failed: ") + ZSTD_getErrorName(n));
  }
  out.resize(head + n);
  if (out.size() > kMaxSharedIndexBytes) {
    return Status::InvalidArgument("the shared index of layer " + index.blob_digest + " is above " +
                                   std::to_string(kMaxSharedIndexBytes >> 20) + " MiB");
  }
  return out;
}

Result<LayerIndex> DecodeSharedIndex(std::string_view bytes, const LayerDescriptor& layer) {
  const std::string what = "shared index of layer " + layer.digest;
  if (bytes.size() > kMaxSharedIndexBytes) {
    return Status::Corrupt(what + ": " + std::to_string(bytes.size()) + " bytes, above the " +
                           std::to_string(kMaxSharedIndexBytes >> 20) + " MiB limit");
  }
  if (bytes.size() < kMagic.size() + 1 || bytes.substr(0, kMagic.size()) != kMagic) {
    return Status::Corrupt(what + ": bad magic (not an imgfs shared index)");
  }
  const uint8_t version = static_cast<uint8_t>(bytes[kMagic.size()]);
  if (version != kVersion) {
    return Status::Corrupt(what + ": unknown version " + std::to_string(version));
  }
  std::string_view frame = bytes.substr(kMagic.size() + 1);
  const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
    return Status::Corrupt(what + ": not a zstd frame with its size");
  }
  if (size > kMaxSharedIndexBodyBytes) {
    return Status::Corrupt(what + ": states " + std::to_string(size) +
                           " decompressed bytes, above the limit of " +
                           std::to_string(kMaxSharedIndexBodyBytes));
  }
  // zstd's largest ratio is about 32768:1 per block; a stated size beyond it is a lie that
  // must not be allocated.
  if (size / 32768 > frame.size()) {
    return Status::Corrupt(what + ": states more decompressed bytes than its frame can hold");
  }
  const size_t frame_len = ZSTD_findFrameCompressedSize(frame.data(), frame.size());
  if (ZSTD_isError(frame_len) || frame_len != frame.size()) {
    return Status::Corrupt(what + ": bytes after the zstd frame, or a truncated frame");
  }
  std::string payload(size, '\0');
  size_t n = ZSTD_decompress(payload.data(), payload.size(), frame.data(), frame.size());
  if (ZSTD_isError(n) || n != size) {
    return Status::Corrupt(what + ": damaged zstd frame" +
                           (ZSTD_isError(n) ? std::string(": ") + ZSTD_getErrorName(n) : ""));
  }
  size_t pos = 0;
  std::string digest, diff_id;
  if (!GetStr(payload, &pos, &digest) || !GetStr(payload, &pos, &diff_id)) {
    return Status::Corrupt(what + ": truncated header");
  }
  Result<LayerIndex> index = DeserializeLayerIndexBody(
      std::string_view(payload).substr(pos), kMaxSharedIndexEntries, kMaxSharedIndexUnits);
  if (!index.ok()) return index.status().WithContext(what);
  if (digest != layer.digest || index->blob_digest != layer.digest) {
    return Status::Corrupt(what + ": it indexes layer " + index->blob_digest);
  }
  if (index->blob_size != layer.size) {
    return Status::Corrupt(what + ": it says the blob has " + std::to_string(index->blob_size) +
                           " bytes, the manifest " + std::to_string(layer.size));
  }
  if (!IsStreamedFormat(index->format)) {
    return Status::Corrupt(what + ": format '" + AbbreviateName(index->format) +
                           "' (only gzip and tar are shared)");
  }
  if (diff_id != index->diff_id || !ValidateDigest(diff_id).ok()) {
    return Status::Corrupt(what + ": missing or inconsistent diff_id");
  }
  if (!layer.diff_id.empty() && diff_id != layer.diff_id) {
    return Status::Corrupt(what + ": diff_id " + diff_id + ", the image config says " +
                           layer.diff_id);
  }
  for (size_t i = 0; i < index->units.size(); ++i) {
    const Unit& u = index->units[i];
    const UnitCodec want = index->format == "gzip" ? UnitCodec::kZran : UnitCodec::kRaw;
    if (u.codec != want || u.sha256.empty()) {
      return Status::Corrupt(what + ": unit " + std::to_string(i) +
                             " is not a digested span of a " + index->format + " layer");
    }
  }
  return index;
}

}  // namespace imgfs::fs
