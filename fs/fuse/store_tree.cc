#include "fs/fuse/store_tree.h"

#include <cstring>

#include "fs/fuse/fuse_request.h"

namespace imgfs::fs::internal {

Store::Store(LayerProvider& provider, std::function<std::string()> stats)
    : provider_(provider), stats_(std::move(stats)) {
  nodes_.resize(2);
  nodes_[1].kind = Kind::kRoot;
  nodes_[1].parent = 1;
  slots_.emplace_back();  // slot 0: none
}

NsNode Store::Node(uint64_t ino) {
  MutexLock lock(&mu_);
  return ino < nodes_.size() ? nodes_[ino] : NsNode{};
}

uint64_t Store::Child(uint64_t parent, const std::string& name, NsNode node) {
  MutexLock lock(&mu_);
  auto [it, inserted] = by_name_.emplace(std::make_pair(parent, name), 0);
  if (inserted) {
    node.parent = parent;
    nodes_.push_back(std::move(node));
    it->second = nodes_.size() - 1;
  }
  return it->second;
}

uint32_t Store::Slot(const std::string& ref, const std::string& digest,
                     std::shared_ptr<const StoreLayer> layer) {
  MutexLock lock(&mu_);
  auto [it, inserted] = slot_of_.emplace(std::make_pair(ref, digest), 0);
  if (inserted) {
    slots_.push_back(std::move(layer));
    it->second = static_cast<uint32_t>(slots_.size() - 1);
  }
  return it->second;
}

std::shared_ptr<const StoreLayer> Store::Layer(uint32_t slot) {
  MutexLock lock(&mu_);
  return slot < slots_.size() ? slots_[slot] : nullptr;
}

Result<DiffNode> FindDiff(Store& store, uint64_t ino) {
  DiffNode d;
  d.layer = store.Layer(SlotOf(ino));
  if (!d.layer) return Status::NotFound("no layer for inode " + std::to_string(ino));
  d.tree_ino = ino & kTreeInoMask;
  return d;
}

struct stat NsStat(uint64_t ino, const NsNode& n, Store& store) {
  struct stat st;
  std::memset(&st, 0, sizeof(st));
  st.st_ino = ino;
  st.st_blksize = internal::kBlockSize;
  if (n.kind == Kind::kInfo || n.kind == Kind::kBlob) {
    std::shared_ptr<const StoreLayer> layer = store.Layer(n.slot);
    st.st_mode = S_IFREG | 0444;
    st.st_nlink = 1;
    if (layer)
      st.st_size = static_cast<off_t>(n.kind == Kind::kInfo ? layer->info.size()
                                                            : layer->blob_size);
  } else {
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
  }
  st.st_blocks = (st.st_size + 511) / 512;
  return st;
}

struct stat DiffStat(uint32_t slot, const Tree::Attr& a) {
  struct stat st = internal::ToStat(a);
  st.st_ino = DiffIno(slot, a.ino);
  return st;
}

}  // namespace imgfs::fs::internal
