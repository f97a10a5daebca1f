// The queries of a built Tree: lookups, attributes, directory listings, links, xattrs and file
// sources. Building it (the overlay merge of the layers) is in tree_build.cc.
#include "fs/tree/tree.h"

#include <sys/stat.h>

#include <algorithm>
#include <string>
#include <unordered_set>

namespace imgfs::fs {

Tree::Tree() = default;
Tree::~Tree() = default;

const Tree::Node* Tree::Find(uint64_t ino) const {
  if (ino == 0 || ino >= nodes_.size()) return nullptr;
  return &nodes_[ino];
}

const Entry* Tree::SourceEntry(const Node& node) const {
  if (node.layer == kNone) return nullptr;
  return &layers_[node.layer]->entries[node.entry];
}

Tree::Attr Tree::MakeAttr(uint64_t ino, const Node& node) const {
  Attr a;
  a.ino = ino;
  a.mode = node.mode;
  a.nlink = node.nlink;
  a.uid = node.uid;
  a.gid = node.gid;
  a.size = node.size;
  a.rdev = node.rdev;
  a.mtime_sec = node.mtime_sec;
  a.mtime_nsec = node.mtime_nsec;
  return a;
}

static Status NoInode(uint64_t ino) { return Status::NotFound("no inode " + std::to_string(ino)); }

Result<Tree::Attr> Tree::GetAttr(uint64_t ino) const {
  const Node* n = Find(ino);
  if (!n) return NoInode(ino);
  return MakeAttr(ino, *n);
}

Result<Tree::Attr> Tree::Lookup(uint64_t parent, std::string_view name) const {
  const Node* dir = Find(parent);
  if (!dir) return NoInode(parent);
  if (!S_ISDIR(dir->mode)) return Status::InvalidArgument("inode is not a directory");
  if (name == ".") return MakeAttr(parent, *dir);
  if (name == "..") return MakeAttr(dir->parent, nodes_[dir->parent]);
  auto begin = children_.begin() + dir->child_begin;
  auto end = begin + dir->child_count;
  auto it = std::lower_bound(begin, end, name,
                             [](const Child& c, std::string_view n) { return c.name < n; });
  if (it == end || it->name != name) {
    return Status::NotFound("no entry \"" + std::string(name) + "\"");
  }
  return MakeAttr(it->ino, nodes_[it->ino]);
}

Status Tree::ReadDir(
    uint64_t ino, uint64_t offset,
    const std::function<bool(std::string_view, const Attr&, uint64_t)>& emit) const {
  const Node* dir = Find(ino);
  if (!dir) return NoInode(ino);
  if (!S_ISDIR(dir->mode)) return Status::InvalidArgument("inode is not a directory");
  uint64_t total = 2 + uint64_t{dir->child_count};
  for (uint64_t pos = offset; pos < total; ++pos) {
    bool more;
    if (pos == 0) {
      more = emit(".", MakeAttr(ino, *dir), 1);
    } else if (pos == 1) {
      more = emit("..", MakeAttr(dir->parent, nodes_[dir->parent]), 2);
    } else {
      const Child& c = children_[dir->child_begin + (pos - 2)];
      more = emit(c.name, MakeAttr(c.ino, nodes_[c.ino]), pos + 1);
    }
    if (!more) break;
  }
  return Status::Ok();
}

Result<std::string> Tree::ReadLink(uint64_t ino) const {
  const Node* n = Find(ino);
  if (!n) return NoInode(ino);
  const Entry* e = SourceEntry(*n);
  if (!S_ISLNK(n->mode) || !e) return Status::InvalidArgument("inode is not a symlink");
  return e->link_target;
}

Result<std::vector<std::string>> Tree::ListXattrs(uint64_t ino) const {
  const Node* n = Find(ino);
  if (!n) return NoInode(ino);
  std::vector<std::string> names;
  const Entry* e = SourceEntry(*n);
  if (!e) return names;
  // Linear whatever the count: a name recorded twice is listed once.
  std::unordered_set<std::string_view> seen;
  names.reserve(e->xattrs.size());
  for (const auto& [name, value] : e->xattrs) {
    if (seen.insert(name).second) names.push_back(name);
  }
  return names;
}

Result<std::string> Tree::GetXattr(uint64_t ino, std::string_view name) const {
  const Node* n = Find(ino);
  if (!n) return NoInode(ino);
  const Entry* e = SourceEntry(*n);
  if (e) {
    // A name recorded twice: the later record wins, as it would on extraction.
    for (auto it = e->xattrs.rbegin(); it != e->xattrs.rend(); ++it) {
      if (it->first == name) return it->second;
    }
  }
  return Status::NotFound("no xattr \"" + std::string(name) + "\"");
}

Result<FileSource> Tree::GetFileSource(uint64_t ino) const {
  const Node* n = Find(ino);
  if (!n) return NoInode(ino);
  if (!S_ISREG(n->mode) || n->layer == kNone) {
    return Status::InvalidArgument("inode is not a regular file");
  }
  return FileSource{n->layer, n->entry, n->size};
}

Result<uint64_t> Tree::InodeOfPath(std::string_view path) const {
  uint64_t ino = kRootIno;
  size_t start = 0;
  while (start < path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    Result<Attr> a = Lookup(ino, path.substr(start, slash - start));
    if (!a.ok()) return Status::NotFound("no path \"" + std::string(path) + "\"");
    ino = a->ino;
    start = slash + 1;
  }
  return ino;
}

}  // namespace imgfs::fs
