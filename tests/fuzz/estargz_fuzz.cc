// eStargz layers (fs/layer/estargz.h): the footer, the TOC's gzip member and tar header read
// through a BlobSource from a blob in memory, and the TOC JSON turned into an index.
// The input is used three ways at once, so seeds may be whole blobs or TOC JSON:
//   - ParseEstargzFooter over its tail;
//   - BuildEstargzIndex over it as the whole blob, under a TOC digest annotation that cannot
//     match (the path up to the digest check: footer, range requests, gzip, tar);
//   - IndexFromTocJson over it as TOC JSON.
// Invariants: errors are input errors; an accepted TOC gives an index that passes
// ValidateLayerIndex, one check list per unit, and survives a Serialize/Deserialize round trip.
#include "base/digest.h"
#include "fs/layer/estargz.h"
#include "fs/layer/toc.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/toc_check.h"
#include "tests/support/fake_blob_source.h"

namespace imgfs::fuzz {
namespace {

// TOC offsets of the seeds are far below this; units must end before it.
constexpr uint64_t kDataEnd = 1 << 24;

void Run(std::string_view input) {
  uint64_t footer_size = 0;
  auto toc_offset = fs::ParseEstargzFooter(input, &footer_size);
  if (toc_offset.ok()) FUZZ_CHECK(footer_size == 51 || footer_size == 47, "footer size");

  fs::LayerDescriptor blob_layer;
  blob_layer.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  blob_layer.digest = Sha256Digest(input);
  blob_layer.size = input.size();
  blob_layer.annotations[std::string(fs::kEstargzTocDigestAnnotation)] = "sha256:" +
                                                                         std::string(64, '0');
  test::FakeBlobSource source(std::string(input), test::FakeBlobSource::Serve::kAnyDigest);
  auto read = fs::BuildEstargzIndex(blob_layer, &source);
  FUZZ_CHECK(!read.ok() && IsInputError(read.status()), read.status().ToString());

  CheckToc(
      fs::IndexFromTocJson(input, fs::TocBlob{blob_layer.digest, kDataEnd + 51,
                                              fs::UnitCodec::kGzipMember, kDataEnd, "estargz"}));
}

}  // namespace
}  // namespace imgfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  imgfs::fuzz::Run(imgfs::fuzz::AsView(data, size));
  return 0;
}
