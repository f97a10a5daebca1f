// The namespace of the layer store (store_fs.h) apart from its FUSE callbacks: the store's own
// nodes (root, image and layer directories, `info` and `blob`), the layers it serves (slots), and
// the inode numbering that tells a diff's inodes from the store's. Internal to fs/fuse.
//
// Inodes: the store's own nodes are numbered from 2 in the order they are first looked up (1 is
// the root); diff inode n of the layer in slot k (k >= 1) is (k << kSlotShift) | n. Nothing is
// forgotten while the store runs (see store_fs.h).
//
// Thread-safety: a Store is shared by libfuse's worker threads; its methods lock mu_ and return
// copies or shared layers, which are immutable.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "base/thread_annotations.h"
#include "fs/fuse/store_fs.h"
#include "fs/tree/tree.h"

namespace imgfs::fs::internal {

inline constexpr int kSlotShift = 40;
inline constexpr uint64_t kTreeInoMask = (uint64_t{1} << kSlotShift) - 1;

inline constexpr const char* kDiffName = "diff";
inline constexpr const char* kInfoName = "info";
inline constexpr const char* kBlobName = "blob";

enum class Kind : uint8_t { kNone, kRoot, kRef, kLayer, kInfo, kBlob };

// A node of the store's own namespace (not of a diff).
struct NsNode {
  Kind kind = Kind::kNone;
  uint64_t parent = 0;
  std::string ref;     // kRef and below: the decoded reference
  std::string digest;  // kLayer and below
  uint32_t slot = 0;   // kLayer and below: the served layer
};

class Store {
 public:
  Store(LayerProvider& provider, std::function<std::string()> stats);

  LayerProvider& provider() { return provider_; }
  const std::function<std::string()>& stats() const { return stats_; }

  // The node `ino`, or one of Kind::kNone when there is none.
  NsNode Node(uint64_t ino) EXCLUDES(mu_);

  // The child `name` of `parent`, made on first use.
  uint64_t Child(uint64_t parent, const std::string& name, NsNode node) EXCLUDES(mu_);

  // The slot of `ref`'s layer `digest`, given `layer` on first use.
  uint32_t Slot(const std::string& ref, const std::string& digest,
                std::shared_ptr<const StoreLayer> layer) EXCLUDES(mu_);

  // The layer in `slot`, or nullptr.
  std::shared_ptr<const StoreLayer> Layer(uint32_t slot) EXCLUDES(mu_);

 private:
  LayerProvider& provider_;
  const std::function<std::string()> stats_;

  // State below is protected by mu_.
  Mutex mu_;
  std::vector<NsNode> nodes_ GUARDED_BY(mu_);  // by ino; [0] unused, [1] the root
  std::map<std::pair<uint64_t, std::string>, uint64_t> by_name_ GUARDED_BY(mu_);
  std::vector<std::shared_ptr<const StoreLayer>> slots_ GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, uint32_t> slot_of_ GUARDED_BY(mu_);
};

inline bool IsDiffIno(uint64_t ino) { return (ino >> kSlotShift) != 0; }
inline uint32_t SlotOf(uint64_t ino) { return static_cast<uint32_t>(ino >> kSlotShift); }
inline uint64_t DiffIno(uint32_t slot, uint64_t tree_ino) {
  return (uint64_t{slot} << kSlotShift) | tree_ino;
}

// A diff inode resolved to its layer and the inode in its tree.
struct DiffNode {
  std::shared_ptr<const StoreLayer> layer;
  uint64_t tree_ino = 0;
};

// The layer and tree inode of diff inode `ino`; kNotFound when its slot holds no layer.
Result<DiffNode> FindDiff(Store& store, uint64_t ino);

// What stat(2) shows of the store's node `n` (inode `ino`).
struct stat NsStat(uint64_t ino, const NsNode& n, Store& store);

// What stat(2) shows of a diff's inode, numbered in the store.
struct stat DiffStat(uint32_t slot, const Tree::Attr& a);

}  // namespace imgfs::fs::internal
