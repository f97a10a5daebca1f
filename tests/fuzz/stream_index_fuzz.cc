// The streaming index pass over a whole layer blob (fs/layer/stream_index.h): gzip (with
// zran checkpoints; concatenated members, padding) or uncompressed tar, from memory, fed in
// pieces. Small spans so that a few KiB of input already make several units.
// Invariants: errors are input errors; an accepted index passes ValidateLayerIndex, survives
// a Serialize/Deserialize round trip, its units' ranges lie in the blob and hash to their
// sha256, and every unit decodes (fs/layer/decode.h) to exactly its decoded length.
#include "base/digest.h"
#include "fs/layer/decode.h"
#include "fs/layer/stream_index.h"
#include "tests/fuzz/fuzz_support.h"

namespace imgfs::fuzz {
namespace {

// Decoding costs time in proportion to the inflated size; a bomb among the inputs must not
// stall the fuzzer, so units are decoded only up to this much output per input.
constexpr uint64_t kMaxDecodeCheck = 8 << 20;

void Run(std::string_view blob) {
  fs::StreamIndexOptions options;
  options.span = 8 << 10;
  options.min_member_span = 1 << 10;
  options.raw_unit = 4 << 10;
  fs::StreamIndexer indexer(options);
  const size_t piece = 1 + (blob.size() * 7919) % 4099;
  Status s;
  for (size_t at = 0; at < blob.size() && s.ok(); at += piece) {
    s = indexer.Feed(blob.substr(at, piece));
  }
  if (!s.ok()) {
    FUZZ_CHECK(IsInputError(s), s.ToString());
    return;
  }
  auto index = indexer.Finish();
  FUZZ_CHECK(indexer.blob_digest() == Sha256Digest(blob), "blob digest");
  if (!index.ok()) {
    FUZZ_CHECK(IsInputError(index.status()), index.status().ToString());
    return;
  }
  FUZZ_CHECK(index->blob_size == blob.size(), "blob size");
  Status valid = fs::ValidateLayerIndex(*index);
  FUZZ_CHECK(valid.ok(), valid.ToString());
  auto back = fs::LayerIndex::Deserialize(index->Serialize());
  FUZZ_CHECK(back.ok(), back.status().ToString());
  FUZZ_CHECK(back->Serialize() == index->Serialize(), "serialization round trip");
  uint64_t decoded = 0;
  for (const fs::Unit& unit : index->units) {
    FUZZ_CHECK(unit.coff <= blob.size() && unit.clen <= blob.size() - unit.coff,
               "unit outside the blob");
    std::string_view range = blob.substr(unit.coff, unit.clen);
    FUZZ_CHECK(Sha256Digest(range) == unit.sha256, "unit digest");
    decoded += unit.ulen;
    if (decoded > kMaxDecodeCheck) continue;
    auto out = fs::DecodeUnit(unit, range);
    FUZZ_CHECK(out.ok(), out.status().ToString());
    FUZZ_CHECK(out->size() == unit.ulen, "decoded length");
  }
}

}  // namespace
}  // namespace imgfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  imgfs::fuzz::Run(imgfs::fuzz::AsView(data, size));
  return 0;
}
