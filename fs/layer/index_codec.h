// The compression of LayerIndex records (fs/layer/layer_index.cc): the body's zstd frame (or
// zlib stream of versions 2 and 3) and the zstd frames of version 5's zran windows. Internal to
// fs/layer; functions of values only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace imgfs::fs::index_codec {

// The largest zran window (deflate's dictionary).
inline constexpr uint64_t kMaxWindow = 32768;

// One zstd frame of `raw` with its content size and XXH64 checksum, appended to `*out`. False
// only on memory exhaustion (then `*out` is as it was).
bool AppendZstdFrame(std::string_view raw, std::string* out);

// Decodes `compressed`, exactly one zstd frame stating `body_len` as its content size, into
// `body` (room for `body_len` bytes). kCorrupt when it is not that.
Status DecompressZstdBody(std::string_view compressed, uint64_t body_len, char* body);
// The same for a zlib stream (versions 2 and 3).
Status InflateBody(std::string_view compressed, uint64_t body_len, char* body);

// Whether `frame` is exactly one zstd frame stating a content size of at most kMaxWindow: what
// a stored window must be before its index is accepted (its data is checked when decoded).
bool IsWindowFrame(std::string_view frame);
// Decodes a window frame into `*out`. kCorrupt when it does not decode to what it states.
Status DecodeWindowFrame(std::string_view frame, std::string* out);

}  // namespace imgfs::fs::index_codec
