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
// Thread-safety: immutable after construction; every method is safe from many threads. The
// verify of a UnitRef calls its sink on the thread that verifies.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
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
  explicit ImageLayers(std::vector<std::shared_ptr<const LayerIndex>> layers);

  size_t size() const { return layers_.size(); }
  // The index of layer `layer`, or nullptr (out of range, or no index).
  const LayerIndex* layer(uint32_t layer) const {
    return layer < layers_.size() ? layers_[layer].get() : nullptr;
  }
  const std::vector<std::shared_ptr<const LayerIndex>>& indexes() const { return layers_; }

  // The cache's view of unit `unit` of layer `layer`; see above for `on_decoded`.
  // REQUIRES: layer(layer) != nullptr and unit < its units.size().
  cache::UnitRef MakeUnitRef(uint32_t layer, uint32_t unit, DecodedSink on_decoded = {}) const;

  // The decoded output of the unit, from its `compressed` bytes as the cache returned them
  // (verified against the unit's sha256, or by a verify from MakeUnitRef: decoded and checked
  // again here, which costs the hashing once more). Same REQUIRES as MakeUnitRef.
  Result<std::string> Decode(uint32_t layer, uint32_t unit, std::string compressed) const;

 private:
  const std::vector<std::shared_ptr<const LayerIndex>> layers_;
  // Per layer, per unit: the decoded-chunk checks of units without a sha256 (else empty).
  std::vector<std::vector<std::vector<ChunkCheck>>> checks_;
};

}  // namespace imgfs::fs
