// BufferPool: a few large byte buffers kept for reuse, so that reading unit after unit does
// not map, fault in and zero a fresh buffer each time.
//
// In a mount, blocks of 256 KiB or more are mapped on their own (M_MMAP_THRESHOLD, cli/daemon.cc):
// every unit read from the store (its stored bytes) and every decode (its decoded bytes) cost an
// mmap, a page fault and a cleared page per 4 KiB, a memset of the whole buffer, and a munmap:
// about a third of the daemon's time in a warm sequential read. A buffer given back here is
// handed to the next Take of a size it fits, its pages already mapped.
//
//   std::string raw = pool.Take(clen);   // exactly clen bytes, contents unspecified
//   ... pread into raw, decode it ...
//   pool.Give(std::move(raw));           // kept (within the bounds) or freed
//
//   std::shared_ptr<const std::string> unit = pool.Share(std::move(decoded));
//   // given back to the pool when the last reference goes (the LRU evicts it, the reply is sent)
//
// Bounds: at most `max_kept_bytes` of capacity and `max_kept_buffers` buffers are kept idle;
// a buffer that would pass either is freed. Buffers under kMinBytes are never kept (malloc
// serves them from its arenas cheaply). A buffer never exceeds its size by more than
// MaxSlack(size) (an eighth, or kRoundBytes for small ones): a kept buffer is reused only
// within that, so that a small unit never pins a large buffer (the decoded-unit LRU counts
// sizes, fs/tree/content_reader.h).
//
// Thread-safety: all methods may be called from many threads at once. A buffer taken belongs
// to the caller alone. The process-wide pool (UnitBuffers) is never destroyed, so Share's
// references may outlive anything.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/thread_annotations.h"

namespace imgfs {

class BufferPool {
 public:
  static constexpr size_t kMinBytes = 256 << 10;
  // New buffers of kMinBytes or more get a capacity of the next multiple of this above their
  // size.
  static constexpr size_t kRoundBytes = 64 << 10;
  // How much more than `size` a buffer Take hands out may hold.
  static constexpr size_t MaxSlack(size_t size) { return std::max(kRoundBytes, size / 8); }

  BufferPool(size_t max_kept_bytes, size_t max_kept_buffers)
      : max_kept_bytes_(max_kept_bytes), max_kept_buffers_(max_kept_buffers) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A buffer of exactly `size` bytes whose contents are unspecified: a kept one when one fits
  // (smallest capacity first), else a new one (its capacity rounded up past `size`).
  std::string Take(size_t size) EXCLUDES(mu_);
  // Keeps `buffer` for a later Take when it is at least kMinBytes and fits the bounds; frees
  // it otherwise.
  void Give(std::string&& buffer) EXCLUDES(mu_);
  // `buffer` shared read-only; given back (Give) when the last reference is dropped. The pool
  // must outlive the references.
  std::shared_ptr<const std::string> Share(std::string buffer);

  size_t kept_bytes() const EXCLUDES(mu_);
  size_t kept_buffers() const EXCLUDES(mu_);
  // Takes served by a kept buffer since the pool was made.
  size_t reuses() const EXCLUDES(mu_);

 private:
  const size_t max_kept_bytes_;
  const size_t max_kept_buffers_;

  mutable Mutex mu_;
  std::vector<std::string> kept_ GUARDED_BY(mu_);
  size_t kept_bytes_ GUARDED_BY(mu_) = 0;  // sum of the capacities of kept_
  size_t reuses_ GUARDED_BY(mu_) = 0;
};

// The process's pool for units' stored and decoded bytes (cache/unit_store.cc, fs/layer/decode.cc,
// fs/tree/content_reader.cc): 12 MiB, 4 buffers (docs/architecture.md, "Memory of a mount").
inline constexpr size_t kUnitBufferPoolBytes = 12 << 20;
inline constexpr size_t kUnitBufferPoolBuffers = 4;
BufferPool& UnitBuffers();

}  // namespace imgfs
