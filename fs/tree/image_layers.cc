#include "fs/tree/image_layers.h"

#include <utility>

#include "base/buffer_pool.h"
#include "base/digest.h"
#include "fs/layer/decode.h"

namespace imgfs::fs {

ImageLayers::ImageLayers(std::vector<std::shared_ptr<const LayerIndex>> layers,
                         std::vector<std::string> diff_ids, std::vector<bool> borrowed)
    : layers_(std::move(layers)),
      diff_ids_(std::move(diff_ids)),
      borrowed_(std::move(borrowed)),
      verdicts_(layers_.size()),
      checked_(layers_.size()) {
  checks_.reserve(layers_.size());
  stream_offsets_.resize(layers_.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    const auto& layer = layers_[l];
    checks_.push_back(layer ? UnitChecks(*layer) : std::vector<std::vector<ChunkCheck>>());
    if (layer && l < borrowed_.size() && borrowed_[l]) {
      uint64_t pos = 0;
      for (const Unit& u : layer->units) {
        stream_offsets_[l].push_back(pos);
        pos += u.ulen;
      }
    }
  }
}

bool ImageLayers::HeaderChecked(uint32_t layer, uint32_t entry) const {
  MutexLock lock(&mu_);
  return headers_checked_.count({layer, entry}) > 0;
}

void ImageLayers::MarkHeaderChecked(uint32_t layer, uint32_t entry) const {
  MutexLock lock(&mu_);
  headers_checked_.insert({layer, entry});
}

const std::string& ImageLayers::diff_id(uint32_t layer) const {
  static const std::string* const kNone = new std::string;
  return layer < diff_ids_.size() ? diff_ids_[layer] : *kNone;
}

Status ImageLayers::LayerStatus(uint32_t layer) const {
  if (!any_failed_.load(std::memory_order_acquire)) return Status::Ok();
  MutexLock lock(&mu_);
  return layer < verdicts_.size() ? verdicts_[layer] : Status::Ok();
}

void ImageLayers::FailLayer(uint32_t layer, Status error) const {
  MutexLock lock(&mu_);
  if (layer < verdicts_.size() && verdicts_[layer].ok()) verdicts_[layer] = std::move(error);
  any_failed_.store(true, std::memory_order_release);
}

bool ImageLayers::DiffIdChecked(uint32_t layer) const {
  MutexLock lock(&mu_);
  return layer < checked_.size() && checked_[layer];
}

void ImageLayers::MarkDiffIdChecked(uint32_t layer) const {
  MutexLock lock(&mu_);
  if (layer < checked_.size()) checked_[layer] = true;
}

cache::UnitRef ImageLayers::MakeUnitRef(uint32_t layer, uint32_t unit,
                                        DecodedSink on_decoded) const {
  const LayerIndex& index = *layers_[layer];
  const Unit& u = index.units[unit];
  cache::UnitRef ref{index.blob_digest, u.coff, u.clen, u.sha256};
  if (u.sha256.empty()) {
    const std::vector<ChunkCheck>* checks = &checks_[layer][unit];
    ref.verify = [&u, checks, sink = std::move(on_decoded)](std::string_view compressed) {
      Result<std::string> decoded = DecodeAndVerifyUnit(u, *checks, compressed);
      if (!decoded.ok()) return decoded.status();
      if (sink) sink(std::move(decoded).value());
      return Status::Ok();
    };
  }
  return ref;
}

Result<std::string> ImageLayers::Decode(uint32_t layer, uint32_t unit, std::string compressed,
                                        bool checked) const {
  const Unit& u = layers_[layer]->units[unit];
  Result<std::string> decoded = Status::Internal("unit not decoded");
  if (!checked && DecodeChecksItself(u, compressed)) {
    decoded = DecodeUnitChecked(u, compressed);
  } else if (!checked && u.sha256.empty()) {
    decoded = DecodeAndVerifyUnit(u, checks_[layer][unit], compressed);
  } else if (!checked && Sha256Digest(compressed) != u.sha256) {
    decoded = Status::DigestMismatch("unit at offset " + std::to_string(u.coff) +
                                     " does not match " + u.sha256);
  } else if (u.codec == UnitCodec::kRaw) {
    // Decoding a raw unit is a copy; skip it (units can be MiBs): its buffer is the answer.
    if (u.ulen == u.clen && compressed.size() == u.clen) return compressed;
    decoded = Status::Corrupt("raw unit at offset " + std::to_string(u.coff) +
                              " with ulen != clen");
  } else {
    decoded = DecodeUnit(u, compressed);
  }
  // The decoded bytes are a buffer of their own: the compressed one goes back to the pool
  // for the next unit's read (base/buffer_pool.h).
  UnitBuffers().Give(std::move(compressed));
  return decoded;
}

}  // namespace imgfs::fs
