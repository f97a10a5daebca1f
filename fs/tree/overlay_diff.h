// OverlayDiff: one layer on its own, in the on-disk format of overlayfs, as containers/storage's
// overlay driver extracts a layer into its `diff/` directory (what an additional layer store
// serves to podman, fs/fuse/store_fs.h).
//
// A merged Tree applies whiteouts and opaque markers to the layers below and drops them; a
// layer's diff keeps them as overlayfs reads them from a lower directory:
//   - a whiteout of NAME is a character device 0/0 named NAME (mode 0, the marker's owner);
//   - an opaque directory carries the xattr trusted.overlay.opaque = "y" (its own entry keeps
//     its attributes; without one it is an implicit 0755 root-owned directory).
//   - a hard link's own header gives the shared inode its mode, owner and mtime (and adds its
//     xattrs), as containers/storage's extraction chmods and chowns the link's path (a merged
//     Tree keeps the target's, as umoci unpack does);
//   - a layer without an entry for its root gets a 0555 root-owned root, as containers/storage
//     creates a first layer's diff directory (it copies a parent layer's mode instead, which
//     one layer alone cannot know; only the top layer's root shows in a container).
// Everything else (owners, modes, xattrs, devices, setuid) is the layer's as the indexers
// produced it; eStargz's own files (stargz.index.json, landmarks) are never in a TOC-built
// index. A hard link to a file of a lower layer stays a hard link, which Tree::Build refuses:
// containers/storage cannot extract such a layer either.
//
// Pure function of its input; thread-safe. The result shares nothing with `layer`.
#pragma once

#include "base/status.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

inline constexpr const char* kOverlayOpaqueXattr = "trusted.overlay.opaque";

// The index of `layer`'s diff: whiteout and opaque markers rewritten as above, units and
// chunks unchanged (its files read the same blob). A Tree built from it alone is the diff.
LayerIndex OverlayDiffIndex(const LayerIndex& layer);

}  // namespace imgfs::fs
