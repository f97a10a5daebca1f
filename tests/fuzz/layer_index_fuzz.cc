// The serialized LayerIndex read back from the cache (fs/layer/layer_index.h): the cache
// directory is outside data too (a full disk, another version, an attacker with write access
// to it).
// The serialized form is a header and a zlib-compressed body, which mutations of the whole
// rarely get through; so each input is read twice: as a whole serialized index (the header
// and inflate path), and as a body, wrapped in a valid header of each version read and
// compressed here (the record decoder). Seeds are both (tests/fuzz/make_corpus.py: *.lix and
// *.body).
// Version 5 (the current one) keeps each zran window as a zstd frame after the body, decoded
// only when its unit is: every window of an accepted index is decoded here too (seeds:
// v5-*.lix, one with a damaged window).
// Invariants: errors are kCorrupt; an accepted index passes ValidateLayerIndex and serializes
// to bytes that deserialize to the same index; each window decodes or is kCorrupt; the chunk
// digests of a TOC index can be read back (UnitChecks) without a crash.
#include <zlib.h>

#include <string>

#include "fs/layer/layer_index.h"
#include "fs/layer/toc.h"
#include "tests/fuzz/fuzz_support.h"

namespace imgfs::fuzz {
namespace {

void Varint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// The serialized form of `body` (layer_index.cc: magic, version, body length, zlib body).
// Version 3 bodies carry a diff_id after prefetch_end; version 2 bodies (still read) do not.
std::string Wrap(std::string_view body, uint64_t version) {
  std::string out = "IMGFSLIX";
  Varint(version, &out);
  Varint(body.size(), &out);
  uLongf clen = compressBound(body.size());
  std::string compressed(clen, '\0');
  if (compress2(reinterpret_cast<Bytef*>(compressed.data()), &clen,
                reinterpret_cast<const Bytef*>(body.data()), body.size(), 1) != Z_OK) {
    return out;
  }
  return out + compressed.substr(0, clen);
}

void Check(std::string_view bytes) {
  auto index = fs::LayerIndex::Deserialize(bytes);
  if (!index.ok()) {
    FUZZ_CHECK(index.status().code() == Code::kCorrupt, index.status().ToString());
    return;
  }
  Status valid = fs::ValidateLayerIndex(*index);
  FUZZ_CHECK(valid.ok(), valid.ToString());
  const std::string again = index->Serialize();
  auto back = fs::LayerIndex::Deserialize(again);
  FUZZ_CHECK(back.ok(), back.status().ToString());
  FUZZ_CHECK(back->Serialize() == again, "serialization round trip");
  std::string scratch;
  for (const fs::Unit& unit : index->units) {
    Result<std::string_view> window = fs::UnitWindow(unit, &scratch);
    FUZZ_CHECK(window.ok() || window.status().code() == Code::kCorrupt, window.status().ToString());
    FUZZ_CHECK(!window.ok() || window->size() <= 32768, "window above 32 KiB");
  }
  auto checks = fs::UnitChecks(*index);
  FUZZ_CHECK(checks.size() == index->units.size(), "one check list per unit");
}

}  // namespace
}  // namespace imgfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input = imgfs::fuzz::AsView(data, size);
  imgfs::fuzz::Check(input);
  imgfs::fuzz::Check(imgfs::fuzz::Wrap(input, 2));
  imgfs::fuzz::Check(imgfs::fuzz::Wrap(input, 3));
  return 0;
}
