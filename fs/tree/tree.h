// Tree: the merged, read-only overlay of an image's layers, as the mount shows it.
//
// Build() applies the layers bottom to top with the OCI/overlay rules:
//   - within a layer, entries apply in archive order; a later entry for a path replaces an
//     earlier one; a directory entry over an existing directory only updates its attributes;
//     a directory replaces a non-directory and vice versa (the old subtree is dropped);
//   - a whiteout (Entry::whiteout) deletes the path and its subtree from LOWER layers only, and
//     an opaque marker (Entry::opaque) hides everything the lower layers had below that
//     directory; neither ever touches an entry of its own layer, whatever the archive order
//     (every layer's markers are applied before its other entries);
//   - missing parent directories are created implicitly (0755, root-owned, mtime 0) and take
//     the attributes of their explicit entry if one comes later;
//   - a hard link shares its target's inode (same ino; nlink counts the names), the target
//     being any path present when the link is applied (this layer or a lower one); a link to
//     a missing path or to a directory is kCorrupt, as docker's extraction fails on it;
//   - the root entry "" (if any) gives the root its attributes;
//   - a symlink's mode is 0777 whatever its entry says (Linux has no other; docker never
//     chmods one); a uid or gid of 2^32 - 1 shows as 0 (chown's "leave it": extraction
//     leaves such a file root's).
// An index whose paths break the name limits of layer_index.h (NAME_MAX, PATH_MAX, which also
// bound the depth to 2048 levels) is kCorrupt; every walk is iterative.
//
// Inode numbers: root is 1 (FUSE_ROOT_ID); the others are dense (2..inode_count()) and
// stable for the life of the Tree. Inodes are never forgotten: the tree is immutable.
//
// Ownership: the Tree keeps the layers alive (shared_ptr) and points into their entries
// (names, link targets, xattrs) instead of copying them, which keeps a 100k-entry tree small.
//
// Thread-safety: immutable after Build; every const method is safe from many threads.
// Failure: lookups of unknown inodes/names give kNotFound; asking a non-directory for its
// children or a non-symlink for its target gives kInvalidArgument.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "fs/layer/layer_index.h"
#include "fs/tree/file_source.h"

namespace imgfs::fs {

class Tree {
 public:
  static constexpr uint64_t kRootIno = 1;

  // What stat(2) shows of an inode. `mode` has the S_IF* type bits; atime = ctime = mtime.
  struct Attr {
    uint64_t ino = 0;
    uint32_t mode = 0;
    uint32_t nlink = 0;
    uint32_t uid = 0;
    uint32_t gid = 0;
    uint64_t size = 0;  // regular files: content size; symlinks: target length; else 0
    uint64_t rdev = 0;  // makedev(major, minor) for devices
    int64_t mtime_sec = 0;
    uint32_t mtime_nsec = 0;
  };

  struct Stats {
    uint64_t inodes = 0;            // live inodes, root included
    uint64_t regular_files = 0;     // regular-file inodes (a hard-linked file counts once)
    uint64_t total_file_bytes = 0;  // sum of their sizes
  };

  // `layers` bottom layer first. Fails only on indexes that break LayerIndex's contract
  // (kCorrupt: e.g. a path that is not clean) and on hard links to nothing or to a directory
  // (kCorrupt naming the link); other merge conflicts are resolved, not errors.
  static Result<std::unique_ptr<Tree>> Build(std::vector<std::shared_ptr<const LayerIndex>> layers);

  ~Tree();
  Tree(const Tree&) = delete;
  Tree& operator=(const Tree&) = delete;

  // The child `name` of directory `parent` ("." and ".." included). kNotFound.
  Result<Attr> Lookup(uint64_t parent, std::string_view name) const;
  Result<Attr> GetAttr(uint64_t ino) const;

  // Emits the entries of directory `ino` from position `offset` on: "." and ".." first, then
  // the children sorted by name (bytewise). `next_offset` is what to pass to resume after the
  // emitted entry; emitting stops when `emit` returns false (the caller's buffer is full).
  Status ReadDir(uint64_t ino, uint64_t offset,
                 const std::function<bool(std::string_view name, const Attr& attr,
                                          uint64_t next_offset)>& emit) const;

  Result<std::string> ReadLink(uint64_t ino) const;

  // Xattr names in archive order; GetXattr gives kNotFound (ENODATA) for an absent name.
  Result<std::vector<std::string>> ListXattrs(uint64_t ino) const;
  Result<std::string> GetXattr(uint64_t ino, std::string_view name) const;

  // Where the bytes of regular file `ino` are. kInvalidArgument for other types.
  Result<FileSource> GetFileSource(uint64_t ino) const;

  // The inode of a cleaned path ("" is the root, "etc/passwd"); follows no symlinks.
  Result<uint64_t> InodeOfPath(std::string_view path) const;

  const Stats& stats() const { return stats_; }
  uint64_t inode_count() const { return stats_.inodes; }
  const std::vector<std::shared_ptr<const LayerIndex>>& layers() const { return layers_; }

 private:
  static constexpr uint32_t kNone = 0xffffffffu;

  struct Node {
    uint32_t mode = 0;
    uint32_t nlink = 0;
    uint32_t uid = 0;
    uint32_t gid = 0;
    uint64_t size = 0;
    uint64_t rdev = 0;
    int64_t mtime_sec = 0;
    uint32_t mtime_nsec = 0;
    uint32_t layer = kNone;  // the entry that gave the inode its attributes; kNone: implicit dir
    uint32_t entry = kNone;
    uint32_t parent = 0;  // directories: the parent's ino (root: itself)
    uint32_t child_begin = 0;
    uint32_t child_count = 0;
  };

  struct Child {
    std::string_view name;  // points into an entry path of a layer the Tree keeps alive
    uint32_t ino = 0;
  };

  Tree();

  const Node* Find(uint64_t ino) const;
  Attr MakeAttr(uint64_t ino, const Node& node) const;
  const Entry* SourceEntry(const Node& node) const;

  std::vector<std::shared_ptr<const LayerIndex>> layers_;
  std::vector<Node> nodes_;      // indexed by ino; [0] unused
  std::vector<Child> children_;  // each directory's children, contiguous and sorted by name
  Stats stats_;

  friend class TreeBuilder;  // tree_build.cc: merges the layers and lays out nodes_
};

}  // namespace imgfs::fs
