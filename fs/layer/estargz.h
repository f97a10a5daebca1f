// eStargz layers: the LayerIndex of a layer read from its table of contents (TOC) alone.
//
// An eStargz blob is a gzip tar made of many gzip members: file contents start a new member
// (per chunk of at most a few MiB; newer writers may put several small files into one member,
// telling where each starts with `innerOffset`), the TOC is the tar entry "stargz.index.json"
// in its own member, and a footer ends the blob:
//
//   [member][member]...[TOC member][footer]
//   footer  = an empty gzip member whose extra field holds "%016xSTARGZ" % toc_offset:
//             51 bytes (subfield 'S','G'), or 47 bytes in legacy stargz (bare extra field).
//
// The index is built from the footer and the TOC only: one range request for the blob's tail
// (sized so that the TOC usually comes with it), one more when the TOC starts earlier. The TOC
// JSON must hash to the layer's `containerd.io/snapshot/stargz/toc.digest` annotation (the
// manifest that carries it is verified), so the index is as trusted as the manifest. The TOC
// becomes an index as fs/layer/toc.h describes (kGzipMember units, verified by the digests of
// their decoded chunks).
//
// Thread-safety: pure functions; safe from many threads (the BlobSource must be, too).
// Failure: malformed footer/TOC/JSON, offsets outside the blob, limits of toc.h crossed ->
// kCorrupt; TOC digest mismatch -> kDigestMismatch; errors of the BlobSource are passed on with
// context. Never a crash, and no allocation is sized by an outside number without a bound.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/blob_source.h"
#include "base/status.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

inline constexpr std::string_view kEstargzTocDigestAnnotation =
    "containerd.io/snapshot/stargz/toc.digest";

// The index of eStargz layer `layer`, from its footer and TOC fetched through `source`.
// REQUIRES: layer.annotations holds kEstargzTocDigestAnnotation (else kInvalidArgument:
// such layers must take the full-pass path) and layer.size is the blob's size.
Result<LayerIndex> BuildEstargzIndex(const LayerDescriptor& layer, BlobSource* source);

// --- The parsers BuildEstargzIndex is made of: bytes in, values out. ---

// The TOC offset in a 51-byte eStargz or 47-byte legacy stargz footer. `tail` is the end of
// the blob (at least 47 bytes); *footer_size gets 51 or 47.
Result<uint64_t> ParseEstargzFooter(std::string_view tail, uint64_t* footer_size);

// The TOC JSON inside `toc_member`, the blob's bytes from the TOC offset to the footer: one
// gzip member holding a tar stream whose first entry (after extended headers) is
// "stargz.index.json". Inflates at most kMaxTocJsonBytes (toc.h) and a few headers.
Result<std::string> ExtractEstargzTocJson(std::string_view toc_member);

}  // namespace imgfs::fs
