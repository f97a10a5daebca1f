// LayerIndexMemoryBytes (fs/layer/layer_index.h).
#include <string>

#include "fs/layer/layer_index.h"

namespace imgfs::fs {
namespace {

// Heap bytes of a string beyond the object itself: none while it fits in its own buffer.
uint64_t StringHeap(const std::string& s) {
  return s.capacity() > std::string().capacity() ? s.capacity() + 1 : 0;
}

}  // namespace

uint64_t LayerIndexMemoryBytes(const LayerIndex& index) {
  uint64_t bytes = sizeof(LayerIndex) + StringHeap(index.blob_digest) + StringHeap(index.format) +
                   StringHeap(index.diff_id) + index.entries.capacity() * sizeof(Entry) +
                   index.units.capacity() * sizeof(Unit);
  const std::string* record = nullptr;  // the units of one index share theirs
  for (const Unit& u : index.units) {
    bytes += StringHeap(u.sha256) + StringHeap(u.window);
    if (u.window_record != nullptr && u.window_record.get() != record) {
      record = u.window_record.get();
      bytes += StringHeap(*record);
    }
  }
  for (const Entry& e : index.entries) {
    bytes += StringHeap(e.path) + StringHeap(e.link_target) +
             e.xattrs.capacity() * sizeof(e.xattrs[0]) + e.chunks.capacity() * sizeof(Chunk);
    for (const auto& [name, value] : e.xattrs) bytes += StringHeap(name) + StringHeap(value);
    for (const Chunk& c : e.chunks) bytes += StringHeap(c.sha256);
  }
  return bytes;
}

}  // namespace imgfs::fs
