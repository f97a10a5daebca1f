// FileSource: where a regular file's bytes are, as the Tree hands it to the ContentReader.
//
// A value naming one entry of one layer of the image (indexes into the layer list both were
// built from). Hard-linked names share the FileSource of the entry that created the inode.
#pragma once

#include <cstdint>

namespace imgfs::fs {

struct FileSource {
  uint32_t layer = 0;  // index into the image's layers, bottom first
  uint32_t entry = 0;  // index into that layer's LayerIndex::entries
  uint64_t size = 0;   // the file's size (== the entry's size)
};

}  // namespace imgfs::fs
