// Writes seeds for layer_index_fuzz: for each input file (a tar or gzip layer blob, or an
// eStargz/zstd:chunked TOC JSON when its name ends in .json), the serialized LayerIndex that
// imgfs would keep in its cache, to OUT_DIR/<input name>.lix. Inputs that give no index are
// reported and skipped. Used by tests/fuzz/make_corpus.py.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "fs/layer/stream_index.h"
#include "fs/layer/toc.h"

namespace {

imgfs::Result<imgfs::fs::LayerIndex> IndexOf(const std::string& name, const std::string& bytes) {
  using namespace imgfs::fs;
  if (name.ends_with(".json")) {
    return IndexFromTocJson(bytes, TocBlob{"sha256:" + std::string(64, 'a'), (1 << 24) + 51,
                                           UnitCodec::kGzipMember, 1 << 24, "estargz"});
  }
  StreamIndexOptions options;
  options.span = 8 << 10;
  options.min_member_span = 1 << 10;
  options.raw_unit = 4 << 10;
  StreamIndexer indexer(options);
  imgfs::Status s = indexer.Feed(bytes);
  if (!s.ok()) return s;
  return indexer.Finish();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OUT_DIR FILE...\n", argv[0]);
    return 2;
  }
  std::filesystem::path out_dir(argv[1]);
  for (int i = 2; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string name = std::filesystem::path(argv[i]).filename();
    auto index = IndexOf(name, bytes);
    if (!index.ok()) {
      std::fprintf(stderr, "%s: %s\n", argv[i], index.status().ToString().c_str());
      continue;
    }
    std::ofstream(out_dir / (name + ".lix"), std::ios::binary) << index->Serialize();
  }
  return 0;
}
