// ImageLayers: the layers of one mounted image, and the one maker of their cache::UnitRefs.
//
// Holds each layer's LayerIndex and, for the units without a compressed sha256 (eStargz,
// zstd:chunked: the TOC gives digests of decoded chunks only), the chunk checks their decoded
// bytes must pass (fs/layer/toc.h, UnitChecks), computed once when the object is made. Every
// UnitRef of the mount is built here: a unit with a sha256 is verified by the cache itself; one
// without gets a UnitRef::verify that decodes it and checks every chunk in it, and hands the
// decoded bytes to the caller's sink when there is one (the reader keeps them, so a unit
// verified on fetch is not decoded a second time to be served).
//
// Ownership: shared by the mount's ContentReader and Prefetcher (std::shared_ptr<const
// ImageLayers>); it keeps the layer indexes alive. A UnitRef made here refers to this object and
// must not be used after it is gone.
//
// A layer can be found bad after the mount began: when its whole uncompressed stream, hashed
// once every unit is in the cache, differs from the image config's diff_id
// (fs/tree/layer_check.h). FailLayer records that; from then on LayerStatus returns the error
// and the reader serves nothing more of the layer (EIO through FUSE).
//
// A layer may be "borrowed": its index came from the registry through referrers (cli/
// shared_index.h), not from this host's pass and not bound to the image's digest. The reader
// then checks each file's tar header in front of its data before serving it (fs/tree/
// header_check.h, HeaderChecked), and a completed `--prefetch all` checks the whole blob and
// its diff_id (fs/tree/layer_check.h); either failing fails the layer.
//
// Thread-safety: immutable after construction but for the layers' verdicts (under a mutex);
// every method is safe from many threads. The verify of a UnitRef calls its sink on the
// thread that verifies.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "base/thread_annotations.h"
#include "cache/cache.h"
#include "fs/layer/layer_index.h"
#include "fs/layer/toc.h"

namespace imgfs::fs {

class ImageLayers {
 public:
  // Receives the decoded bytes of a unit that a UnitRef::verify has just checked.
  using DecodedSink = std::function<void(std::string decoded)>;

  // `layers` in image order (lowest first); a null entry is a layer without an index (nothing
  // of it can be read).
  // `diff_ids`, when not empty, holds the image config's diff_id of each layer (same order).
  // `borrowed`, when not empty, says per layer whether its index is borrowed (see above).
  explicit ImageLayers(std::vector<std::shared_ptr<const LayerIndex>> layers,
                       std::vector<std::string> diff_ids = {}, std::vector<bool> borrowed = {});

  size_t size() const { return layers_.size(); }
  // The index of layer `layer`, or nullptr (out of range, or no index).
  const LayerIndex* layer(uint32_t layer) const {
    return layer < layers_.size() ? layers_[layer].get() : nullptr;
  }
  const std::vector<std::shared_ptr<const LayerIndex>>& indexes() const { return layers_; }
  // The image config's diff_id of layer `layer`; "" when not known.
  const std::string& diff_id(uint32_t layer) const;

  bool borrowed(uint32_t layer) const { return layer < borrowed_.size() && borrowed_[layer]; }
  // Where unit `unit` of a borrowed layer starts in the layer's uncompressed stream (the units
  // of a streamed index are consecutive). REQUIRES: borrowed(layer), unit in range.
  uint64_t UnitStreamOffset(uint32_t layer, uint32_t unit) const {
    return stream_offsets_[layer][unit];
  }
  // Whether entry `entry` of a borrowed layer passed the header check, and recording it.
  bool HeaderChecked(uint32_t layer, uint32_t entry) const EXCLUDES(mu_);
  void MarkHeaderChecked(uint32_t layer, uint32_t entry) const EXCLUDES(mu_);

  // OK, or the error that made layer `layer` untrustworthy (see above). Asked on every read:
  // takes no lock while no layer has been found bad.
  Status LayerStatus(uint32_t layer) const EXCLUDES(mu_);
  // Records `error` (not OK) as layer `layer`'s verdict; the first one stays.
  void FailLayer(uint32_t layer, Status error) const EXCLUDES(mu_);
  // Whether this object has seen layer `layer`'s diff_id checked (either way), and recording it.
  bool DiffIdChecked(uint32_t layer) const EXCLUDES(mu_);
  void MarkDiffIdChecked(uint32_t layer) const EXCLUDES(mu_);

  // The cache's view of unit `unit` of layer `layer`; see above for `on_decoded`.
  // REQUIRES: layer(layer) != nullptr and unit < its units.size().
  cache::UnitRef MakeUnitRef(uint32_t layer, uint32_t unit, DecodedSink on_decoded = {}) const;

  // The decoded output of the unit, from its `compressed` bytes as the cache returned them.
  // `checked`: the cache verified them on this read (against the unit's sha256, or by a verify
  // from MakeUnitRef), so they are only decoded. Otherwise (bytes the store served trusting
  // its records, cache::UnitRef::trust_store) they are checked here first, as cheaply as they
  // can be: by the decode itself where they carry a checksum of their own (DecodeChecksItself:
  // gzip members, zstd frames with one), else against the unit's sha256 or chunk digests.
  // kCorrupt / kDigestMismatch when they fail. Same REQUIRES as MakeUnitRef.
  Result<std::string> Decode(uint32_t layer, uint32_t unit, std::string compressed,
                             bool checked) const;

 private:
  const std::vector<std::shared_ptr<const LayerIndex>> layers_;
  // Per layer, per unit: the decoded-chunk checks of units without a sha256 (else empty).
  std::vector<std::vector<std::vector<ChunkCheck>>> checks_;
  const std::vector<std::string> diff_ids_;
  const std::vector<bool> borrowed_;
  std::vector<std::vector<uint64_t>> stream_offsets_;  // per borrowed layer, per unit

  // Set (after verdicts_) once any layer has a verdict: until then reads skip mu_.
  mutable std::atomic<bool> any_failed_{false};

  // State below is protected by mu_.
  mutable Mutex mu_;
  mutable std::vector<Status> verdicts_ GUARDED_BY(mu_);  // per layer; OK = not found bad
  mutable std::vector<bool> checked_ GUARDED_BY(mu_);     // per layer: diff_id checked here
  mutable std::set<std::pair<uint32_t, uint32_t>> headers_checked_ GUARDED_BY(mu_);
};

}  // namespace imgfs::fs
