// The tar walk over a layer's uncompressed stream (fs/layer/tar.h): ustar, GNU and PAX
// headers, extension records, whiteouts, names.
// Invariants: errors are input errors; every entry's path is already clean; a regular file's
// data (a sparse file's data regions) lies inside the stream when the stream ended cleanly;
// and feeding the same bytes in pieces of another size gives the same entries and outcome.
#include <string>
#include <vector>

#include "fs/layer/tar.h"
#include "tests/fuzz/fuzz_support.h"

namespace imgfs::fuzz {
namespace {

struct Walk {
  std::vector<std::string> entries;                 // one line per entry
  std::vector<std::pair<uint64_t, uint64_t>> data;  // regular files: [offset, offset + size)
  Status status;
};

std::string Describe(const fs::Entry& e, uint64_t data_offset) {
  std::string s = e.path + '|' + std::to_string(static_cast<int>(e.type)) + '|' +
                  std::to_string(e.mode) + '|' + std::to_string(e.uid) + '|' +
                  std::to_string(e.gid) + '|' + std::to_string(e.mtime_sec) + '.' +
                  std::to_string(e.mtime_nsec) + '|' + std::to_string(e.size) + '|' +
                  e.link_target + '|' + std::to_string(e.dev_major) + ',' +
                  std::to_string(e.dev_minor) + '|' + (e.whiteout ? "w" : "") +
                  (e.opaque ? "o" : "") + '|' + std::to_string(data_offset);
  for (const auto& [name, value] : e.xattrs) s += '|' + name + '=' + value;
  return s;
}

Walk RunWalk(std::string_view stream, size_t piece) {
  Walk walk;
  fs::TarReader reader([&](fs::Entry e, uint64_t data_offset) {
    auto clean = fs::CleanPath(e.path);
    FUZZ_CHECK(clean.ok() && *clean == e.path, "unclean path " + e.path);
    if (e.type == fs::EntryType::kRegular && e.chunks.empty()) {
      walk.data.emplace_back(data_offset, e.size);
    }
    for (const fs::Chunk& c : e.chunks) {  // a sparse file: its data regions, holes aside
      if (c.unit != fs::Chunk::kZeroUnit) {
        walk.data.emplace_back(data_offset + c.unit_offset, c.length);
      }
    }
    walk.entries.push_back(Describe(e, data_offset));
    return Status::Ok();
  });
  Status s;
  for (size_t at = 0; at < stream.size() && s.ok(); at += piece) {
    s = reader.Feed(stream.substr(at, piece));
  }
  if (s.ok()) s = reader.Finish();
  walk.status = s;
  return walk;
}

void Run(std::string_view stream) {
  Walk whole = RunWalk(stream, stream.size() + 1);
  if (!whole.status.ok()) {
    FUZZ_CHECK(IsInputError(whole.status), whole.status.ToString());
  } else {
    for (const auto& [offset, size] : whole.data) {
      FUZZ_CHECK(offset <= stream.size() && size <= stream.size() - offset,
                 "data past the end of the stream");
    }
  }
  // 1, 511, 512, 513, ... pieces: a size derived from the input, so each input tries one.
  const size_t piece = 1 + (stream.size() * 7919) % 1031;
  Walk split = RunWalk(stream, piece);
  FUZZ_CHECK(split.status.code() == whole.status.code(),
             whole.status.ToString() + " vs " + split.status.ToString());
  if (whole.status.ok()) {
    FUZZ_CHECK(split.entries == whole.entries,
               "entries differ with pieces of " + std::to_string(piece) + " bytes");
  }
}

}  // namespace
}  // namespace imgfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  imgfs::fuzz::Run(imgfs::fuzz::AsView(data, size));
  return 0;
}
