// A shared layer index as a registry serves it (fs/layer/shared_index.h): from anyone, the
// input `imgfs mount` trusts least. Each input is read twice: as a whole shared blob (magic,
// version, zstd frame), and as the decompressed payload, wrapped and compressed here, so that
// mutations reach the index body behind the zstd frame. Seeds: tests/fuzz/make_corpus.py
// (*.six and *.payload), rewritten to index the layer decoded for here.
// Invariants: errors are kCorrupt; an accepted index passes ValidateLayerIndex, describes the
// layer asked for, and encodes to a blob that decodes to the same index.
#include <zstd.h>

#include <string>

#include "fs/layer/shared_index.h"
#include "tests/fuzz/fuzz_support.h"

namespace imgfs::fuzz {
namespace {

fs::LayerDescriptor Layer() {
  fs::LayerDescriptor layer;
  layer.digest = "sha256:" + std::string(64, 'a');
  layer.size = uint64_t{1} << 40;  // make_corpus.py's SHARED_SIZE
  return layer;
}

std::string Wrap(std::string_view payload) {
  std::string out = "IMGFSSIX\x01";
  std::string frame(ZSTD_compressBound(payload.size()), '\0');
  size_t n = ZSTD_compress(frame.data(), frame.size(), payload.data(), payload.size(), 1);
  if (ZSTD_isError(n)) return out;
  return out + frame.substr(0, n);
}

void Check(std::string_view bytes) {
  const fs::LayerDescriptor layer = Layer();
  auto index = fs::DecodeSharedIndex(bytes, layer);
  if (!index.ok()) {
    FUZZ_CHECK(index.status().code() == Code::kCorrupt, index.status().ToString());
    return;
  }
  Status valid = fs::ValidateLayerIndex(*index);
  FUZZ_CHECK(valid.ok(), valid.ToString());
  FUZZ_CHECK(index->blob_digest == layer.digest && index->blob_size == layer.size,
             "an accepted index describes the layer asked for");
  auto again = fs::EncodeSharedIndex(*index);
  FUZZ_CHECK(again.ok(), again.status().ToString());
  auto back = fs::DecodeSharedIndex(*again, layer);
  FUZZ_CHECK(back.ok(), back.status().ToString());
  FUZZ_CHECK(back->Serialize() == index->Serialize(), "round trip");
}

}  // namespace
}  // namespace imgfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input = imgfs::fuzz::AsView(data, size);
  imgfs::fuzz::Check(input);
  imgfs::fuzz::Check(imgfs::fuzz::Wrap(input));
  return 0;
}
