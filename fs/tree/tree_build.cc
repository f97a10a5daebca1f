// Tree::Build: merges the layers bottom to top with the overlay rules tree.h states, into
// mutable build-time inodes, then lays the result out compactly in the Tree. The queries of a
// built Tree are in tree.cc.
#include "fs/tree/tree.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <deque>
#include <string>
#include <unordered_map>
#include <utility>

#include "base/log.h"
#include "base/strings.h"

namespace imgfs::fs {

namespace {

uint32_t TypeBits(EntryType type) {
  switch (type) {
    case EntryType::kRegular:
    case EntryType::kHardlink:
      return S_IFREG;
    case EntryType::kDirectory:
      return S_IFDIR;
    case EntryType::kSymlink:
      return S_IFLNK;
    case EntryType::kCharDevice:
      return S_IFCHR;
    case EntryType::kBlockDevice:
      return S_IFBLK;
    case EntryType::kFifo:
      return S_IFIFO;
  }
  return 0;
}

// Splits a cleaned path into its components; kCorrupt when it is not clean (the index broke
// its contract), since a ".." component would otherwise escape the tree.
Status SplitPath(std::string_view path, std::vector<std::string_view>* parts) {
  parts->clear();
  if (path.empty()) return Status::Ok();
  // PATH_MAX also bounds the depth of the tree (2048 levels), whatever built the index.
  if (Status s = ValidateEntryName(path); !s.ok()) {
    return Status::Corrupt("layer index breaks the name limits: " + s.message());
  }
  for (std::string_view part : Split(path, '/')) {
    if (part.empty() || part == "." || part == "..") {
      return Status::Corrupt("layer index holds an unclean path \"" + std::string(path) + "\"");
    }
    parts->push_back(part);
  }
  return Status::Ok();
}

}  // namespace

// Merges the layers into mutable build-time inodes, then lays the result out compactly in a
// Tree. Build-time inodes that were deleted are simply not carried over.
class TreeBuilder {
 public:
  static constexpr uint32_t kNone = Tree::kNone;

  explicit TreeBuilder(const std::vector<std::shared_ptr<const LayerIndex>>& layers)
      : layers_(layers) {
    // About one build-time inode per entry (parent directories a layer does not list add a
    // few): the vector is not copied again and again while the layers are merged.
    size_t entries = 2;
    for (const auto& layer : layers) entries += layer->entries.size();
    nodes_.reserve(entries);
    nodes_.emplace_back();  // [0] unused, so that ino 1 is the root
    NewDir();
  }

  Status ApplyLayer(uint32_t li);
  void Finish(Tree* tree);

 private:
  using ChildMap = std::unordered_map<std::string_view, uint32_t>;
  struct BNode {
    uint32_t mode = S_IFDIR | 0755;
    uint32_t uid = 0;
    uint32_t gid = 0;
    int64_t mtime_sec = 0;
    uint32_t mtime_nsec = 0;
    uint64_t size = 0;
    uint64_t rdev = 0;
    uint32_t layer = kNone;
    uint32_t entry = kNone;
    uint32_t names = 0;                  // non-directories: names that refer to the inode
    std::unique_ptr<ChildMap> children;  // directories only
  };

  bool IsDir(uint32_t ino) const { return S_ISDIR(nodes_[ino].mode); }

  uint32_t NewDir() {
    nodes_.emplace_back();
    nodes_.back().children = std::make_unique<ChildMap>();
    return static_cast<uint32_t>(nodes_.size() - 1);
  }

  void SetAttrs(uint32_t ino, uint32_t li, uint32_t ei) {
    const Entry& e = layers_[li]->entries[ei];
    BNode& n = nodes_[ino];
    // A symlink's mode is 0777 whatever the archive says: Linux has no other (docker and
    // containerd never chmod one).
    n.mode = TypeBits(e.type) | (e.type == EntryType::kSymlink ? 0777 : e.mode & 07777);
    // An id of 2^32 - 1 is chown's "leave it": extraction leaves the file root's.
    n.uid = e.uid == UINT32_MAX ? 0 : e.uid;
    n.gid = e.gid == UINT32_MAX ? 0 : e.gid;
    n.mtime_sec = e.mtime_sec;
    n.mtime_nsec = e.mtime_nsec;
    n.size = e.type == EntryType::kRegular   ? e.size
             : e.type == EntryType::kSymlink ? e.link_target.size()
                                             : 0;
    n.rdev = (e.type == EntryType::kCharDevice || e.type == EntryType::kBlockDevice)
                 ? makedev(e.dev_major, e.dev_minor)
                 : 0;
    n.layer = li;
    n.entry = ei;
  }

  // Drops a name; a directory's whole subtree goes with it (its descendants' link counts too,
  // so that a hard link elsewhere keeps the right nlink). Iterative: a deep tree must not
  // cost stack.
  void Unlink(uint32_t ino) {
    std::vector<uint32_t> pending{ino};
    while (!pending.empty()) {
      BNode& n = nodes_[pending.back()];
      pending.pop_back();
      if (!n.children) {
        if (n.names > 0) --n.names;
        continue;
      }
      std::unique_ptr<ChildMap> children = std::move(n.children);
      for (const auto& [name, child] : *children) pending.push_back(child);
    }
  }

  void RemoveChild(uint32_t dir, std::string_view name) {
    ChildMap& children = *nodes_[dir].children;
    auto it = children.find(name);
    if (it == children.end()) return;
    uint32_t ino = it->second;
    children.erase(it);
    Unlink(ino);
  }

  // The directory `parts` names, or kNone. With `create`, missing or non-directory components
  // become implicit directories, as tar extraction would make them.
  uint32_t WalkDirs(const std::vector<std::string_view>& parts, size_t count, bool create) {
    uint32_t dir = Tree::kRootIno;
    for (size_t i = 0; i < count; ++i) {
      ChildMap& children = *nodes_[dir].children;
      auto it = children.find(parts[i]);
      if (it != children.end() && IsDir(it->second)) {
        dir = it->second;
        continue;
      }
      if (!create) return kNone;
      if (it != children.end()) {
        uint32_t old = it->second;
        children.erase(it);
        Unlink(old);
      }
      uint32_t made = NewDir();  // may reallocate nodes_: `children` is not used after this
      nodes_[dir].children->emplace(parts[i], made);
      dir = made;
    }
    return dir;
  }

  uint32_t LookupPath(const std::vector<std::string_view>& parts) {
    if (parts.empty()) return Tree::kRootIno;
    uint32_t dir = WalkDirs(parts, parts.size() - 1, /*create=*/false);
    if (dir == kNone) return kNone;
    const ChildMap& children = *nodes_[dir].children;
    auto it = children.find(parts.back());
    return it == children.end() ? kNone : it->second;
  }

  Status ApplyMarker(const Entry& e);
  Status ApplyEntry(uint32_t li, uint32_t ei);

  const std::vector<std::shared_ptr<const LayerIndex>>& layers_;
  std::vector<BNode> nodes_;
  std::vector<std::string_view> parts_;   // scratch
  std::vector<std::string_view> target_;  // scratch
};

Status TreeBuilder::ApplyMarker(const Entry& e) {
  IMGFS_RETURN_IF_ERROR(SplitPath(e.path, &parts_));
  if (e.whiteout) {
    if (parts_.empty()) return Status::Ok();  // a whiteout of the root means nothing
    uint32_t dir = WalkDirs(parts_, parts_.size() - 1, /*create=*/false);
    if (dir != kNone) RemoveChild(dir, parts_.back());
    return Status::Ok();
  }
  // Opaque: the lower contents of the directory go; the directory itself stays.
  uint32_t dir = LookupPath(parts_);
  if (dir == kNone || !IsDir(dir)) return Status::Ok();
  std::unique_ptr<ChildMap> children = std::move(nodes_[dir].children);
  nodes_[dir].children = std::make_unique<ChildMap>();
  for (const auto& [name, child] : *children) Unlink(child);
  return Status::Ok();
}

Status TreeBuilder::ApplyEntry(uint32_t li, uint32_t ei) {
  const Entry& e = layers_[li]->entries[ei];
  IMGFS_RETURN_IF_ERROR(SplitPath(e.path, &parts_));
  if (e.opaque) {
    // The marker says the directory exists in this layer even without its own entry.
    WalkDirs(parts_, parts_.size(), /*create=*/true);
    return Status::Ok();
  }
  if (TypeBits(e.type) == 0) {
    return Status::Corrupt("layer " + layers_[li]->blob_digest + " has an entry of unknown type");
  }
  if (parts_.empty()) {
    if (e.type == EntryType::kDirectory) {
      SetAttrs(Tree::kRootIno, li, ei);
    } else {
      IMGFS_LOG(kWarning, "layer " << layers_[li]->blob_digest
                                   << ": ignoring a non-directory entry for the root");
    }
    return Status::Ok();
  }
  if (e.type == EntryType::kHardlink) {
    // Resolve the target before touching the link's own path (they may be equal).
    Status s = SplitPath(e.link_target, &target_);
    uint32_t target = s.ok() ? LookupPath(target_) : kNone;
    if (target == kNone || IsDir(target)) {
      // link(2) fails on both, and so does docker's and containerd's extraction of the layer.
      return Status::Corrupt("hard link '" + AbbreviateName(e.path) + "' -> '" +
                             AbbreviateName(e.link_target) + "' names " +
                             (target == kNone ? "no earlier file" : "a directory"));
    }
    uint32_t dir = WalkDirs(parts_, parts_.size() - 1, /*create=*/true);
    ChildMap& children = *nodes_[dir].children;
    auto it = children.find(parts_.back());
    if (it != children.end() && it->second == target) return Status::Ok();
    RemoveChild(dir, parts_.back());
    nodes_[dir].children->emplace(parts_.back(), target);
    ++nodes_[target].names;
    return Status::Ok();
  }

  uint32_t dir = WalkDirs(parts_, parts_.size() - 1, /*create=*/true);
  {
    ChildMap& children = *nodes_[dir].children;
    auto it = children.find(parts_.back());
    if (it != children.end()) {
      if (e.type == EntryType::kDirectory && IsDir(it->second)) {
        SetAttrs(it->second, li, ei);  // a directory over a directory keeps its contents
        return Status::Ok();
      }
      RemoveChild(dir, parts_.back());
    }
  }
  uint32_t ino;
  if (e.type == EntryType::kDirectory) {
    ino = NewDir();
  } else {
    nodes_.emplace_back();
    ino = static_cast<uint32_t>(nodes_.size() - 1);
    nodes_[ino].names = 1;
  }
  SetAttrs(ino, li, ei);
  nodes_[dir].children->emplace(parts_.back(), ino);
  return Status::Ok();
}

Status TreeBuilder::ApplyLayer(uint32_t li) {
  const std::vector<Entry>& entries = layers_[li]->entries;
  // Markers first: they act on the layers below only, never on this layer's own entries,
  // whatever their order in the archive.
  for (const Entry& e : entries) {
    if (!e.whiteout && !e.opaque) continue;
    Status s = ApplyMarker(e);
    if (!s.ok()) return s.WithContext("layer " + layers_[li]->blob_digest);
  }
  for (uint32_t ei = 0; ei < entries.size(); ++ei) {
    if (entries[ei].whiteout) continue;
    Status s = ApplyEntry(li, ei);
    if (!s.ok()) return s.WithContext("layer " + layers_[li]->blob_digest);
  }
  return Status::Ok();
}

void TreeBuilder::Finish(Tree* tree) {
  // Breadth-first, so that each directory's children are laid out contiguously; a hard-linked
  // inode gets its number the first time one of its names is met.
  std::vector<uint32_t> new_ino(nodes_.size(), 0);
  auto carry = [&](uint32_t old, uint32_t parent) {
    const BNode& b = nodes_[old];
    Tree::Node n;
    n.mode = b.mode;
    n.nlink = b.children ? 2 : b.names;
    n.uid = b.uid;
    n.gid = b.gid;
    n.size = b.size;
    n.rdev = b.rdev;
    n.mtime_sec = b.mtime_sec;
    n.mtime_nsec = b.mtime_nsec;
    n.layer = b.layer;
    n.entry = b.entry;
    n.parent = parent;
    tree->nodes_.push_back(n);
    uint32_t ino = static_cast<uint32_t>(tree->nodes_.size() - 1);
    new_ino[old] = ino;
    if (S_ISREG(b.mode)) {
      ++tree->stats_.regular_files;
      tree->stats_.total_file_bytes += b.size;
    }
    return ino;
  };
  tree->nodes_.reserve(nodes_.size());
  tree->nodes_.emplace_back();
  carry(Tree::kRootIno, Tree::kRootIno);
  std::deque<uint32_t> queue{Tree::kRootIno};
  std::vector<std::pair<std::string_view, uint32_t>> sorted;
  while (!queue.empty()) {
    uint32_t old_dir = queue.front();
    queue.pop_front();
    uint32_t dir = new_ino[old_dir];
    sorted.assign(nodes_[old_dir].children->begin(), nodes_[old_dir].children->end());
    std::sort(sorted.begin(), sorted.end());
    tree->nodes_[dir].child_begin = static_cast<uint32_t>(tree->children_.size());
    tree->nodes_[dir].child_count = static_cast<uint32_t>(sorted.size());
    for (const auto& [name, old] : sorted) {
      uint32_t ino = new_ino[old];
      if (ino == 0) ino = carry(old, dir);
      if (nodes_[old].children) {
        ++tree->nodes_[dir].nlink;
        queue.push_back(old);
      }
      tree->children_.push_back({name, ino});
    }
  }
  tree->stats_.inodes = tree->nodes_.size() - 1;
}

Result<std::unique_ptr<Tree>> Tree::Build(std::vector<std::shared_ptr<const LayerIndex>> layers) {
  for (const auto& layer : layers) {
    if (!layer) return Status::InvalidArgument("Tree::Build was given a null layer");
  }
  std::unique_ptr<Tree> tree(new Tree());
  tree->layers_ = std::move(layers);
  TreeBuilder builder(tree->layers_);
  for (uint32_t li = 0; li < tree->layers_.size(); ++li) {
    IMGFS_RETURN_IF_ERROR(builder.ApplyLayer(li));
  }
  builder.Finish(tree.get());
  return tree;
}

}  // namespace imgfs::fs
