#include "fs/tree/overlay_diff.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>

namespace imgfs::fs {

LayerIndex OverlayDiffIndex(const LayerIndex& layer) {
  LayerIndex out;
  out.blob_digest = layer.blob_digest;
  out.format = layer.format;
  out.blob_size = layer.blob_size;
  out.units = layer.units;
  out.prefetch_end = layer.prefetch_end;
  out.entries.reserve(layer.entries.size());

  std::set<std::string> opaque;  // directories marked opaque
  std::set<std::string> explicit_dirs;
  bool has_root = false;
  for (const Entry& e : layer.entries) {
    if (e.path.empty() && !e.whiteout && !e.opaque) has_root = true;
    if (e.opaque) opaque.insert(e.path);
    if (!e.whiteout && !e.opaque && e.type == EntryType::kDirectory) explicit_dirs.insert(e.path);
  }
  auto mark_opaque = [](Entry* dir) {
    for (const auto& [name, value] : dir->xattrs) {
      if (name == kOverlayOpaqueXattr) return;
    }
    dir->xattrs.emplace_back(kOverlayOpaqueXattr, "y");
  };
  for (const Entry& e : layer.entries) {
    if (e.whiteout) {
      Entry w;
      w.path = e.path;
      w.type = EntryType::kCharDevice;
      w.mode = 0;
      w.uid = e.uid;
      w.gid = e.gid;
      w.mtime_sec = e.mtime_sec;
      w.mtime_nsec = e.mtime_nsec;
      out.entries.push_back(std::move(w));
      continue;
    }
    if (e.opaque) {
      // The marker stands for the directory itself only when the layer has no entry of it.
      if (explicit_dirs.count(e.path)) continue;
      Entry d;
      d.path = e.path;
      d.type = EntryType::kDirectory;
      d.mode = 0755;
      mark_opaque(&d);
      out.entries.push_back(std::move(d));
      continue;
    }
    if (e.type == EntryType::kHardlink) {
      // Extraction chmods, chowns and sets the times of the link's path: the shared inode
      // takes the link header's attributes (containers/storage's createTarFile), and its
      // xattrs are added.
      auto target = std::find_if(out.entries.rbegin(), out.entries.rend(), [&](const Entry& t) {
        return t.path == e.link_target && t.type == EntryType::kRegular;
      });
      if (target != out.entries.rend()) {
        target->mode = e.mode;
        target->uid = e.uid;
        target->gid = e.gid;
        target->mtime_sec = e.mtime_sec;
        target->mtime_nsec = e.mtime_nsec;
        target->xattrs.insert(target->xattrs.end(), e.xattrs.begin(), e.xattrs.end());
      }
    }
    out.entries.push_back(e);
    if (e.type == EntryType::kDirectory && opaque.count(e.path)) mark_opaque(&out.entries.back());
  }
  if (!has_root) {
    // containers/storage makes a layer's diff directory 0555 when nothing in the layer names
    // the root (and copies the parent's mode, which this layer alone cannot know).
    Entry root;
    root.type = EntryType::kDirectory;
    root.mode = 0555;
    out.entries.insert(out.entries.begin(), std::move(root));
  }
  return out;
}

}  // namespace imgfs::fs
