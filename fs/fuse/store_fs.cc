// The layer store's FUSE callbacks: the store's own directories and files answered from its
// namespace (store_tree.h), everything inside a diff/ from that layer's tree and reader.
#include "fs/fuse/store_fs.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "base/base64.h"
#include "base/log.h"
#include "fs/fuse/fuse_request.h"
#include "fs/fuse/fuse_session.h"
#include "fs/fuse/store_tree.h"

namespace imgfs::fs {
namespace {

// Layers never change once resolved (internal::kCacheTimeout); names that did not resolve may
// later (a registry that comes back), so only positive answers are cached.
using internal::kCacheTimeout;

using internal::DiffNode;
using internal::DiffStat;
using internal::FindDiff;
using internal::IsDiffIno;
using internal::kBlobName;
using internal::kDiffName;
using internal::Kind;
using internal::kInfoName;
using internal::NsNode;
using internal::NsStat;
using internal::ReplyXattr;
using internal::SlotOf;
using internal::Store;

Store& StoreOf(fuse_req_t req) { return *static_cast<Store*>(fuse_req_userdata(req)); }

// Runs a callback body; no exception leaves (libfuse is C). A body that throws answers EIO.
template <typename Body>
void Serve(fuse_req_t req, const char* op, Body&& body) noexcept {
  try {
    body();
  } catch (const std::exception& e) {
    IMGFS_LOG(kError, "store " << op << ": " << e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    fuse_reply_err(req, EIO);
  }
}

void ReplyStatus(fuse_req_t req, const Status& s) { fuse_reply_err(req, internal::ToErrno(s)); }

void ReplyEntry(fuse_req_t req, const struct stat& st) {
  fuse_entry_param e = internal::ToEntry(st);
  fuse_reply_entry(req, &e);
}

// An ENOENT the kernel does not remember: the name may resolve next time.
void ReplyNoEntry(fuse_req_t req) { fuse_reply_err(req, ENOENT); }

void LookupInLayer(fuse_req_t req, Store& store, uint64_t parent, const NsNode& dir,
                   const std::string& name) {
  std::shared_ptr<const StoreLayer> layer = store.Layer(dir.slot);
  if (!layer) return ReplyNoEntry(req);
  if (name == kDiffName) {
    Result<Tree::Attr> root = layer->diff->GetAttr(Tree::kRootIno);
    if (!root.ok()) return ReplyStatus(req, root.status());
    return ReplyEntry(req, DiffStat(dir.slot, *root));
  }
  Kind kind = name == kInfoName ? Kind::kInfo : name == kBlobName ? Kind::kBlob : Kind::kNone;
  if (kind == Kind::kNone) return ReplyNoEntry(req);  // "use" included
  NsNode node{kind, 0, dir.ref, dir.digest, dir.slot};
  uint64_t ino = store.Child(parent, name, node);
  ReplyEntry(req, NsStat(ino, node, store));
}

void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* cname) noexcept {
  Serve(req, "lookup", [&] {
    Store& store = StoreOf(req);
    std::string name(cname);
    if (IsDiffIno(parent)) {
      Result<DiffNode> d = FindDiff(store, parent);
      if (!d.ok()) return ReplyStatus(req, d.status());
      Result<Tree::Attr> attr = d->layer->diff->Lookup(d->tree_ino, name);
      if (attr.status().IsNotFound()) {
        // The layer never changes: the kernel may remember that the name is not there.
        fuse_entry_param e = internal::NegativeEntry();
        return static_cast<void>(fuse_reply_entry(req, &e));
      }
      if (!attr.ok()) return ReplyStatus(req, attr.status());
      return ReplyEntry(req, DiffStat(SlotOf(parent), *attr));
    }
    NsNode dir = store.Node(parent);
    switch (dir.kind) {
      case Kind::kRoot: {
        std::optional<std::string> ref = DecodeBase64(name);
        if (!ref || ref->empty()) return ReplyNoEntry(req);
        if (Status s = store.provider().CheckReference(*ref); !s.ok()) {
          IMGFS_LOG(kInfo, "store: not a reference: " << name << ": " << s.ToString());
          return ReplyNoEntry(req);
        }
        NsNode node{Kind::kRef, 0, *ref, "", 0};
        uint64_t ino = store.Child(parent, name, node);
        return ReplyEntry(req, NsStat(ino, node, store));
      }
      case Kind::kRef: {
        auto layer = store.provider().GetLayer(dir.ref, name);
        if (!layer.ok()) return ReplyNoEntry(req);  // the provider logged why
        NsNode node{Kind::kLayer, 0, dir.ref, name, store.Slot(dir.ref, name, *layer)};
        uint64_t ino = store.Child(parent, name, node);
        return ReplyEntry(req, NsStat(ino, node, store));
      }
      case Kind::kLayer:
        return LookupInLayer(req, store, parent, dir, name);
      default:
        return ReplyNoEntry(req);
    }
  });
}

void OnGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) noexcept {
  Serve(req, "getattr", [&] {
    Store& store = StoreOf(req);
    if (IsDiffIno(ino)) {
      Result<DiffNode> d = FindDiff(store, ino);
      if (!d.ok()) return ReplyStatus(req, d.status());
      Result<Tree::Attr> attr = d->layer->diff->GetAttr(d->tree_ino);
      if (!attr.ok()) return ReplyStatus(req, attr.status());
      struct stat st = DiffStat(SlotOf(ino), *attr);
      return static_cast<void>(fuse_reply_attr(req, &st, kCacheTimeout));
    }
    NsNode n = store.Node(ino);
    if (n.kind == Kind::kNone) return static_cast<void>(fuse_reply_err(req, ENOENT));
    struct stat st = NsStat(ino, n, store);
    fuse_reply_attr(req, &st, kCacheTimeout);
  });
}

void OnReadlink(fuse_req_t req, fuse_ino_t ino) noexcept {
  Serve(req, "readlink", [&] {
    Result<DiffNode> d = FindDiff(StoreOf(req), ino);
    if (!d.ok()) return ReplyStatus(req, Status::InvalidArgument("not a symlink"));
    Result<std::string> target = d->layer->diff->ReadLink(d->tree_ino);
    if (!target.ok()) return ReplyStatus(req, target.status());
    fuse_reply_readlink(req, target->c_str());
  });
}

void OnOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  Serve(req, "open", [&] {
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
      return static_cast<void>(fuse_reply_err(req, EROFS));
    }
    Store& store = StoreOf(req);
    if (IsDiffIno(ino)) {
      Result<DiffNode> d = FindDiff(store, ino);
      if (!d.ok()) return ReplyStatus(req, d.status());
      Result<Tree::Attr> attr = d->layer->diff->GetAttr(d->tree_ino);
      if (!attr.ok()) return ReplyStatus(req, attr.status());
      if (S_ISDIR(attr->mode)) return static_cast<void>(fuse_reply_err(req, EISDIR));
    } else {
      Kind kind = store.Node(ino).kind;
      if (kind != Kind::kInfo && kind != Kind::kBlob) {
        return static_cast<void>(fuse_reply_err(req, EISDIR));
      }
    }
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
  });
}

void OnRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) noexcept {
  Serve(req, "read", [&] {
    if (off < 0) return static_cast<void>(fuse_reply_err(req, EINVAL));
    Store& store = StoreOf(req);
    std::unique_ptr<char[]> buf(new char[size]);
    Result<size_t> n = Status::NotFound("no such file");
    if (IsDiffIno(ino)) {
      Result<DiffNode> d = FindDiff(store, ino);
      if (!d.ok()) return ReplyStatus(req, d.status());
      Result<FileSource> file = d->layer->diff->GetFileSource(d->tree_ino);
      if (!file.ok()) return ReplyStatus(req, file.status());
      n = d->layer->reader->Read(*file, static_cast<uint64_t>(off), size, buf.get());
    } else {
      NsNode node = store.Node(ino);
      std::shared_ptr<const StoreLayer> layer = store.Layer(node.slot);
      if (!layer) return static_cast<void>(fuse_reply_err(req, EISDIR));
      if (node.kind == Kind::kInfo) {
        size_t begin = std::min(layer->info.size(), static_cast<size_t>(off));
        size_t len = std::min(size, layer->info.size() - begin);
        std::memcpy(buf.get(), layer->info.data() + begin, len);
        n = len;
      } else if (node.kind == Kind::kBlob) {
        n = layer->read_blob(static_cast<uint64_t>(off), size, buf.get());
      }
    }
    if (!n.ok()) {
      IMGFS_LOG(kWarning, "store: read of inode " << ino << ": " << n.status().ToString());
      return ReplyStatus(req, n.status());
    }
    fuse_reply_buf(req, buf.get(), *n);
  });
}

void OnOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  Serve(req, "opendir", [&] {
    fi->keep_cache = IsDiffIno(ino) ? 1 : 0;
    fi->cache_readdir = IsDiffIno(ino) ? 1 : 0;
    fuse_reply_open(req, fi);
  });
}

void OnReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) noexcept {
  Serve(req, "readdir", [&] {
    if (off < 0) return static_cast<void>(fuse_reply_err(req, EINVAL));
    Store& store = StoreOf(req);
    std::unique_ptr<char[]> buf(new char[size]);
    size_t used = 0;
    bool overflow = false;
    auto add = [&](const std::string& name, const struct stat& st, uint64_t next) {
      size_t need = fuse_add_direntry(req, buf.get() + used, size - used, name.c_str(), &st,
                                      static_cast<off_t>(next));
      if (need > size - used) {
        overflow = used == 0;  // an entry that fits no buffer: an error, not an early end
        return false;
      }
      used += need;
      return true;
    };
    if (IsDiffIno(ino)) {
      Result<DiffNode> d = FindDiff(store, ino);
      if (!d.ok()) return ReplyStatus(req, d.status());
      const uint32_t slot = SlotOf(ino);
      Status walk = d->layer->diff->ReadDir(
          d->tree_ino, static_cast<uint64_t>(off),
          [&](std::string_view name, const Tree::Attr& attr, uint64_t next) {
            return add(std::string(name), DiffStat(slot, attr), next);
          });
      if (!walk.ok()) return ReplyStatus(req, walk);
    } else {
      NsNode n = store.Node(ino);
      std::vector<std::string> names = {".", ".."};
      if (n.kind == Kind::kLayer) names.insert(names.end(), {kBlobName, kDiffName, kInfoName});
      for (uint64_t pos = static_cast<uint64_t>(off); pos < names.size(); ++pos) {
        struct stat st;
        std::memset(&st, 0, sizeof(st));
        st.st_ino = ino;
        st.st_mode = names[pos] == kBlobName || names[pos] == kInfoName ? S_IFREG : S_IFDIR;
        if (!add(names[pos], st, pos + 1)) break;
      }
    }
    if (overflow) return static_cast<void>(fuse_reply_err(req, EIO));
    fuse_reply_buf(req, buf.get(), used);
  });
}

void OnRelease(fuse_req_t req, fuse_ino_t, fuse_file_info*) noexcept { fuse_reply_err(req, 0); }

void OnGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) noexcept {
  Serve(req, "getxattr", [&] {
    Store& store = StoreOf(req);
    if (ino == FUSE_ROOT_ID && store.stats() && std::strcmp(name, kStatsXattr) == 0) {
      return static_cast<void>(ReplyXattr(req, size, store.stats()()));
    }
    if (!IsDiffIno(ino)) return static_cast<void>(fuse_reply_err(req, ENODATA));
    Result<DiffNode> d = FindDiff(store, ino);
    if (!d.ok()) return ReplyStatus(req, d.status());
    Result<std::string> value = d->layer->diff->GetXattr(d->tree_ino, name);
    if (value.status().IsNotFound()) return static_cast<void>(fuse_reply_err(req, ENODATA));
    if (!value.ok()) return ReplyStatus(req, value.status());
    ReplyXattr(req, size, *value);
  });
}

void OnListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) noexcept {
  Serve(req, "listxattr", [&] {
    std::string list;
    if (IsDiffIno(ino)) {
      Result<DiffNode> d = FindDiff(StoreOf(req), ino);
      if (!d.ok()) return ReplyStatus(req, d.status());
      Result<std::vector<std::string>> names = d->layer->diff->ListXattrs(d->tree_ino);
      if (!names.ok()) return ReplyStatus(req, names.status());
      list = internal::XattrNameList(*names);
    }
    ReplyXattr(req, size, list);
  });
}

// containers/storage creates <layer dir>/use to say it uses the layer.
void CountUse(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Store& store = StoreOf(req);
  NsNode dir = store.Node(parent);
  if (!IsDiffIno(parent) && dir.kind == Kind::kLayer && std::strcmp(name, kStoreUseFile) == 0) {
    store.provider().Use(dir.ref, dir.digest);
    return static_cast<void>(fuse_reply_err(req, ENOENT));
  }
  fuse_reply_err(req, IsDiffIno(parent) ? EROFS : ENOENT);
}

void OnCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t,
              fuse_file_info*) noexcept {
  Serve(req, "create", [&] { CountUse(req, parent, name); });
}

void OnMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t, dev_t) noexcept {
  Serve(req, "mknod", [&] { CountUse(req, parent, name); });
}

// ... and removes the layer dir to say it no longer does.
void OnRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
  Serve(req, "rmdir", [&] {
    Store& store = StoreOf(req);
    NsNode dir = store.Node(parent);
    if (!IsDiffIno(parent) && dir.kind == Kind::kRef) {
      store.provider().Release(dir.ref, name);
      return static_cast<void>(fuse_reply_err(req, ENOENT));
    }
    fuse_reply_err(req, IsDiffIno(parent) ? EROFS : ENOENT);
  });
}

// Every other change: the diffs are read-only, the namespace is the store's.
struct Refusal {
  template <typename... Args>
  static void Refuse(fuse_req_t req, Args...) noexcept {
    fuse_reply_err(req, EROFS);
  }
};

fuse_lowlevel_ops MakeStoreOps() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof(ops));
  ops.lookup = OnLookup;
  ops.forget = internal::OnForget;
  ops.forget_multi = internal::OnForgetMulti;
  ops.getattr = OnGetattr;
  ops.readlink = OnReadlink;
  ops.open = OnOpen;
  ops.read = OnRead;
  ops.release = OnRelease;
  ops.opendir = OnOpendir;
  ops.readdir = OnReaddir;
  ops.releasedir = OnRelease;
  ops.getxattr = OnGetxattr;
  ops.listxattr = OnListxattr;
  internal::SetWriteOps<Refusal>(&ops);
  // ... but for the protocol's signals (see store_fs.h).
  ops.create = OnCreate;
  ops.mknod = OnMknod;
  ops.rmdir = OnRmdir;
  return ops;
}

}  // namespace

Status ServeStore(LayerProvider& provider, const FuseOptions& options,
                  const std::function<void()>& on_ready) {
  Store store(provider, options.stats);
  const fuse_lowlevel_ops ops = MakeStoreOps();
  return RunFuseSession(ops, &store, options, "", on_ready);
}

}  // namespace imgfs::fs
