// zstd:chunked layers (fs/layer/zstd_chunked.h): the position annotation, the footer, the
// compressed TOC read through a BlobSource from a blob in memory, and the TOC JSON.
// The input is used four ways at once, so seeds may be whole blobs, TOC JSON or annotations:
//   - ParseZstdChunkedPosition over it as a manifest-position annotation;
//   - ParseZstdChunkedFooter over its tail;
//   - when the footer names a range inside it: BuildZstdChunkedIndex over it as the whole blob,
//     with the checksum annotation set to that range's sha256 (as a manifest that pins this
//     blob would), which reaches zstd decoding and the JSON;
//   - IndexFromTocJson over it as TOC JSON (zstd:chunked additions: chunkType, endOffset).
// Invariants: as estargz_fuzz.cc.
#include "base/digest.h"
#include "fs/layer/toc.h"
#include "fs/layer/zstd_chunked.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/toc_check.h"
#include "tests/support/fake_blob_source.h"

namespace imgfs::fuzz {
namespace {

constexpr uint64_t kDataEnd = 1 << 24;

void Run(std::string_view input) {
  auto position = fs::ParseZstdChunkedPosition(input);
  if (!position.ok()) FUZZ_CHECK(IsInputError(position.status()), position.status().ToString());

  fs::LayerDescriptor layer;
  layer.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
  layer.digest = Sha256Digest(input);
  layer.size = input.size();
  auto footer = fs::ParseZstdChunkedFooter(input);
  if (footer.ok()) {
    if (footer->offset <= input.size() && footer->length <= input.size() - footer->offset) {
      layer.annotations[std::string(fs::kZstdChunkedChecksumAnnotation)] = Sha256Digest(
          input.substr(footer->offset, footer->length));
      test::FakeBlobSource source(std::string(input), test::FakeBlobSource::Serve::kAnyDigest);
      CheckToc(fs::BuildZstdChunkedIndex(layer, &source));
    }
  } else {
    FUZZ_CHECK(IsInputError(footer.status()), footer.status().ToString());
  }

  CheckToc(fs::IndexFromTocJson(input,
                                fs::TocBlob{layer.digest, kDataEnd + 72, fs::UnitCodec::kZstdFrame,
                                            kDataEnd, "zstd:chunked"}));
}

}  // namespace
}  // namespace imgfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  imgfs::fuzz::Run(imgfs::fuzz::AsView(data, size));
  return 0;
}
