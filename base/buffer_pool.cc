#include "base/buffer_pool.h"

#include <algorithm>
#include <utility>

namespace imgfs {

std::string BufferPool::Take(size_t size) {
  std::string out;
  if (size >= kMinBytes) {
    MutexLock lock(&mu_);
    // kept_ is sorted by capacity: the first that holds `size` is the smallest that does.
    auto it = std::lower_bound(kept_.begin(), kept_.end(), size,
                               [](const std::string& s, size_t n) { return s.capacity() < n; });
    if (it != kept_.end() && it->capacity() - size <= MaxSlack(size)) {
      out = std::move(*it);
      kept_.erase(it);
      kept_bytes_ -= out.capacity();
      ++reuses_;
    }
  }
  if (size >= kMinBytes && out.capacity() < size) {
    // Rounded up past the size, so that units of nearly one size (a 4 MiB chunk decoded, its
    // gzip member a few bytes longer) can use each other's buffers.
    out.reserve((size / kRoundBytes + 1) * kRoundBytes);
  }
  // A kept buffer was filled to its capacity by Give: shrinking it writes no byte.
  out.resize(size);
  return out;
}

void BufferPool::Give(std::string&& buffer) {
  std::string dropped;  // freed outside the lock
  std::vector<std::string> evicted;
  const size_t cap = buffer.capacity();
  if (cap < kMinBytes || cap > max_kept_bytes_ || max_kept_buffers_ == 0) {
    dropped = std::move(buffer);
    return;
  }
  // Filled to its capacity once, so that a Take of any size it fits does not zero it again.
  buffer.resize(cap);
  MutexLock lock(&mu_);
  // A larger buffer displaces smaller kept ones: units of one size are usually read in a row.
  while (!kept_.empty() && kept_.front().capacity() < cap &&
         (kept_.size() >= max_kept_buffers_ || kept_bytes_ + cap > max_kept_bytes_)) {
    kept_bytes_ -= kept_.front().capacity();
    evicted.push_back(std::move(kept_.front()));
    kept_.erase(kept_.begin());
  }
  if (kept_.size() >= max_kept_buffers_ || kept_bytes_ + cap > max_kept_bytes_) {
    dropped = std::move(buffer);
    return;
  }
  auto at = std::upper_bound(kept_.begin(), kept_.end(), cap,
                             [](size_t n, const std::string& s) { return n < s.capacity(); });
  kept_.insert(at, std::move(buffer));
  kept_bytes_ += cap;
}

std::shared_ptr<const std::string> BufferPool::Share(std::string buffer) {
  if (buffer.capacity() < kMinBytes) {
    return std::make_shared<const std::string>(std::move(buffer));
  }
  auto* owned = new std::string(std::move(buffer));
  return std::shared_ptr<const std::string>(owned, [this](const std::string* s) {
    std::unique_ptr<std::string> gone(const_cast<std::string*>(s));
    Give(std::move(*gone));
  });
}

size_t BufferPool::kept_bytes() const {
  MutexLock lock(&mu_);
  return kept_bytes_;
}

size_t BufferPool::kept_buffers() const {
  MutexLock lock(&mu_);
  return kept_.size();
}

size_t BufferPool::reuses() const {
  MutexLock lock(&mu_);
  return reuses_;
}

BufferPool& UnitBuffers() {
  // Never destroyed: shared units may be dropped by threads still running at exit.
  static BufferPool* const pool = new BufferPool(kUnitBufferPoolBytes, kUnitBufferPoolBuffers);
  return *pool;
}

}  // namespace imgfs
