#include "fs/tree/layer_check.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "base/digest.h"
#include "base/log.h"
#include "fs/layer/diff_id.h"
#include "fs/layer/stream_index.h"

namespace imgfs::fs {
namespace {

// Bytes no unit covers are read from the source in pieces of at most this.
constexpr uint64_t kGapPieceBytes = 4 << 20;

bool IsTocFormat(const LayerIndex& index) {
  return index.format == "estargz" || index.format == "zstd:chunked";
}

}  // namespace

bool DiffIdUnchecked(const LayerIndex& index, const std::string& diff_id) {
  return IsTocFormat(index) && index.diff_id.empty() && !diff_id.empty();
}

bool NeedsDiffIdCheck(const ImageLayers& layers, uint32_t layer) {
  const LayerIndex* index = layers.layer(layer);
  if (index == nullptr || layers.DiffIdChecked(layer)) return false;
  // A borrowed index's diff_id is what its publisher claims, never a check of this host.
  if (layers.borrowed(layer)) return !layers.diff_id(layer).empty();
  return DiffIdUnchecked(*index, layers.diff_id(layer));
}

bool AllUnitsPresent(const ImageLayers& layers, uint32_t layer, cache::Cache* cache) {
  const LayerIndex* index = layers.layer(layer);
  if (index == nullptr) return false;
  for (const Unit& u : index->units) {
    if (u.clen > 0 && !cache->HasUnit(index->blob_digest, u.coff, u.clen)) return false;
  }
  return true;
}

Status CheckLayerDiffId(const ImageLayers& layers, uint32_t layer, cache::Cache* cache,
                        BlobSource* source) {
  if (!NeedsDiffIdCheck(layers, layer)) return Status::Ok();
  const LayerIndex& index = *layers.layer(layer);
  const std::string& digest = index.blob_digest;
  const std::string& want = layers.diff_id(layer);
  IMGFS_ASSIGN_OR_RETURN(std::unique_ptr<DiffIdHasher> hasher,
                         DiffIdHasher::Create(index.format, InflateLimitFor(index.blob_size)));
  Sha256 blob_hash;
  Status decode_error;
  auto feed = [&](std::string_view bytes) {
    blob_hash.Update(bytes);
    if (decode_error.ok()) decode_error = hasher->Feed(bytes);
  };

  uint64_t pos = 0;
  auto read_gap = [&](uint64_t end) -> Status {
    while (pos < end) {
      std::string piece;
      uint64_t n = std::min(end - pos, kGapPieceBytes);
      IMGFS_RETURN_IF_ERROR(source->ReadRange(digest, pos, n, &piece));
      if (piece.size() != n)
        return Status::Corrupt("short read of the blob at " + std::to_string(pos));
      feed(piece);
      pos += n;
    }
    return Status::Ok();
  };
  for (uint32_t u : UnitsInBlobOrder(index)) {
    const Unit& unit = index.units[u];
    if (unit.coff + unit.clen <= pos) continue;
    IMGFS_RETURN_IF_ERROR(read_gap(unit.coff).WithContext("layer " + digest));
    IMGFS_ASSIGN_OR_RETURN(std::string bytes,
                           cache->ReadUnit(layers.MakeUnitRef(layer, u), source));
    feed(std::string_view(bytes).substr(pos - unit.coff));
    pos = unit.coff + unit.clen;
  }
  IMGFS_RETURN_IF_ERROR(read_gap(index.blob_size).WithContext("layer " + digest));

  const std::string got_blob = blob_hash.FinishDigest();
  if (got_blob != digest && layers.borrowed(layer)) {
    // Every span matched the borrowed index's digests, yet together they are not the blob:
    // the index lies about the layer.
    layers.MarkDiffIdChecked(layer);
    Status verdict = Status::DigestMismatch(
        "layer " + digest +
        ": the blob put together from the spans of its shared index hashes to " + got_blob +
        "; the index does not describe this layer");
    IMGFS_LOG(kError, verdict.ToString() << "; its files are not served any more");
    layers.FailLayer(layer, verdict);
    return verdict;
  }
  if (got_blob != digest) {
    return Status::DigestMismatch("layer " + digest +
                                  ": the blob put together from the cache "
                                  "and the registry hashes to " +
                                  got_blob + "; its diff_id was not checked");
  }
  Result<std::string> got = decode_error.ok() ? hasher->Finish()
                                              : Result<std::string>(decode_error);
  layers.MarkDiffIdChecked(layer);
  Status verdict;
  if (!got.ok()) {
    verdict = got.status().WithContext("layer " + digest);
  } else if (!layers.borrowed(layer)) {
    // Recorded whatever it says: a later mount compares without fetching anything. Never for
    // a borrowed index: its entries are still the publisher's, not this host's.
    LayerIndex checked = index;
    checked.diff_id = *got;
    if (Status s = cache->PutLayerIndex(digest, checked.Serialize()); !s.ok()) {
      IMGFS_LOG(kWarning,
                "could not record the diff_id of layer " << digest << ": " << s.ToString());
    }
  }
  if (got.ok() && *got != want) {
    verdict = Status::DigestMismatch("layer " + digest + " uncompresses to " + *got +
                                     " but the image config's diff_id for it is " + want);
  }
  if (verdict.ok()) {
    IMGFS_LOG(kInfo, "layer " << digest << " is complete and matches its diff_id " << want);
    return verdict;
  }
  IMGFS_LOG(kError, verdict.ToString() << "; its files are not served any more");
  layers.FailLayer(layer, verdict);
  return verdict;
}

}  // namespace imgfs::fs
