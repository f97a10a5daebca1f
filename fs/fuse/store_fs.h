// The FUSE face of `imgfs store`: an "additional layer store" as podman's storage library
// (containers/storage, overlay driver) reads it, serving layers lazily.
//
// Layout (names are resolved when looked up; listing the root or an image shows nothing):
//   <root>/<base64 of an image reference>/              one image ("ref dir")
//   <root>/<base64 ref>/<layer digest>/                 one layer of it ("layer dir"); the
//                                                       digest is the compressed blob's or,
//                                                       for eStargz/zstd:chunked, the TOC's
//   <root>/<base64 ref>/<layer digest>/diff/            the layer's own tree in overlay's
//                                                       format (fs/tree/overlay_diff.h)
//   <root>/<base64 ref>/<layer digest>/info             JSON: containers/storage's Layer fields
//   <root>/<base64 ref>/<layer digest>/blob             the compressed layer, read by range
// The protocol's two signals, answered as stargz-store answers them: creating
// `<layer dir>/use` counts a use of the layer (LayerProvider::Use), `rmdir` of the layer dir a
// release (LayerProvider::Release); both reply ENOENT and change nothing in the tree.
//
// A lookup the provider cannot serve (a name that is not base64 of a reference, an image that
// does not resolve, a digest that is not one of its layers, any error) answers ENOENT and is
// not cached by the kernel, so podman falls back to an ordinary pull and a later lookup asks
// again. Everything in diff/ is read-only (EROFS). The mount is not "ro": the kernel would
// refuse the signals before they reach the store.
//
// Inodes: the store's own nodes are numbered from 2 in the order they are first looked up;
// diff inode n of the k-th layer served (k >= 1) is (k << 40) | n. Nothing is ever forgotten
// while the store runs: the kernel keeps entries "forever" as for a mount, and the layers a
// process has seen stay served (a few MB of index per layer).
//
// Thread-safety: ServeStore runs libfuse's multithreaded loop; `provider` is called from its
// worker threads at once and must be safe for that, and must outlive the call.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/status.h"
#include "fs/fuse/fuse_fs.h"
#include "fs/tree/content_reader.h"
#include "fs/tree/tree.h"

namespace imgfs::fs {

// One served layer. Immutable once made; shared by the store and its provider.
struct StoreLayer {
  std::string info;        // the `info` file
  uint64_t blob_size = 0;  // the `blob` file's size
  std::shared_ptr<const Tree> diff;
  std::shared_ptr<ContentReader> reader;  // reads the files of `diff`
  // Copies up to `len` bytes of the compressed blob at `offset` into `out` (fewer only at
  // the blob's end).
  std::function<Result<size_t>(uint64_t offset, size_t len, char* out)> read_blob;
};

class LayerProvider {
 public:
  virtual ~LayerProvider() = default;
  // OK when `ref` (decoded from its directory name) is a reference this store may serve;
  // resolves nothing.
  virtual Status CheckReference(const std::string& ref) = 0;
  // The layer `digest` of image `ref`, resolved and indexed on the first call. Any error is
  // ENOENT to the kernel (logged by the provider).
  virtual Result<std::shared_ptr<const StoreLayer>> GetLayer(const std::string& ref,
                                                             const std::string& digest) = 0;
  virtual void Use(const std::string& ref, const std::string& digest) = 0;
  virtual void Release(const std::string& ref, const std::string& digest) = 0;
};

inline constexpr const char* kStoreUseFile = "use";

// Mounts the store at options.mountpoint (options.fuse_args as given; the CLI adds
// allow_other,suid,dev), then serves as ServeFuse does. A getxattr of kStatsXattr on the root
// answers options.stats(). Errors as ServeFuse's.
Status ServeStore(LayerProvider& provider, const FuseOptions& options,
                  const std::function<void()>& on_ready);

}  // namespace imgfs::fs
