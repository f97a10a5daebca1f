// The diff_id of a layer: the sha256 of its whole uncompressed stream, as docker and containerd
// compute it on pull and as the image config's rootfs.diff_ids lists it.
//
// A DiffIdHasher is fed the compressed blob in order, in pieces of any size, and decodes and
// hashes as it goes, holding only fixed buffers: a gzip stream of any number of members
// (plain gzip and eStargz, whose footer is an empty member), zstd frames (zstd:chunked; its
// skippable frames, which hold the TOC and the footer, decode to nothing), or tar as is. The
// plain gzip/tar index pass hashes its own stream (fs/layer/stream_index.h); this is for the
// TOC formats, whose blob is only ever whole once every unit has been fetched
// (fs/tree/layer_check.h).
//
// Thread-safety: one object belongs to one thread at a time.
// Failure: data that does not decode, a stream that ends inside a member or frame, or more
// than `max_decoded` bytes out (a bomb) -> kCorrupt; an unknown format -> kUnsupported.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"

namespace imgfs::fs {

class DiffIdHasher {
 public:
  // `format` is LayerIndex::format: "tar", "gzip", "estargz" or "zstd:chunked".
  static Result<std::unique_ptr<DiffIdHasher>> Create(std::string_view format,
                                                      uint64_t max_decoded);
  virtual ~DiffIdHasher() = default;

  // The next bytes of the compressed blob. After an error the hasher is done.
  virtual Status Feed(std::string_view compressed) = 0;
  // "sha256:<hex>" of everything decoded; kCorrupt when the blob ended inside a member or
  // frame. Call once, after the last Feed.
  virtual Result<std::string> Finish() = 0;
};

}  // namespace imgfs::fs
