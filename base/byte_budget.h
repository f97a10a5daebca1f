// ByteBudget: a counting semaphore over bytes, to bound how much memory concurrent work holds
// at once (the fetch path: compressed bytes of range requests in flight, cache/fetcher.h).
//
//   ByteBudget budget(32 << 20);
//   ByteBudget::Lease lease = budget.Acquire(length);  // blocks until `length` fits
//   ... fetch and hand off `length` bytes ...
//   // the lease gives them back when it is destroyed (or Release()d)
//
// Acquire(n) blocks until n more bytes fit under the limit. A request larger than the whole
// budget is granted once nothing else is held (it counts as the whole budget), so it never
// blocks forever; at most one such request is held at a time. Waiters are served in arrival
// order: a large request is not starved by small ones that keep fitting in ahead of it, and a
// small one waits behind a large one that is waiting.
//
// A thread must not Acquire while it holds a lease of the same budget: when the budget is
// exhausted by such holders, they wait for each other forever.
//
// Thread-safety: all methods may be called from many threads at once. A Lease belongs to one
// thread at a time (it may be moved); the budget must outlive its leases.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "base/mutex.h"
#include "base/thread_annotations.h"

namespace imgfs {

class ByteBudget {
 public:
  // Bytes held by one Acquire until its destruction or Release. Move-only.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept
        : budget_(std::exchange(other.budget_, nullptr)), bytes_(other.bytes_) {}
    Lease& operator=(Lease&& other) noexcept {
      if (this != &other) {
        Release();
        budget_ = std::exchange(other.budget_, nullptr);
        bytes_ = other.bytes_;
      }
      return *this;
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { Release(); }

    // Gives the bytes back now; later calls do nothing.
    void Release() {
      if (budget_ != nullptr) std::exchange(budget_, nullptr)->Put(bytes_);
    }
    // What the lease holds of the budget (a request larger than the budget holds all of it).
    uint64_t bytes() const { return budget_ != nullptr ? bytes_ : 0; }

   private:
    friend class ByteBudget;
    Lease(ByteBudget* budget, uint64_t bytes) : budget_(budget), bytes_(bytes) {}
    ByteBudget* budget_ = nullptr;
    uint64_t bytes_ = 0;
  };

  // REQUIRES: limit > 0.
  explicit ByteBudget(uint64_t limit) : limit_(std::max<uint64_t>(limit, 1)) {}
  ByteBudget(const ByteBudget&) = delete;
  ByteBudget& operator=(const ByteBudget&) = delete;

  // Blocks until min(bytes, limit()) fit, in arrival order; the lease holds them.
  Lease Acquire(uint64_t bytes) EXCLUDES(mu_) {
    const uint64_t want = std::min(bytes, limit_);
    MutexLock lock(&mu_);
    const uint64_t ticket = next_ticket_++;
    while (ticket != serving_ || used_ + want > limit_) cv_.Wait();
    ++serving_;
    used_ += want;
    peak_ = std::max(peak_, used_);
    cv_.SignalAll();  // the next in line may fit too
    return Lease(this, want);
  }

  uint64_t limit() const { return limit_; }
  // Bytes held now, and the most ever held at once.
  uint64_t used() const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return used_;
  }
  uint64_t peak() const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return peak_;
  }
  // Acquire calls blocked now (for tests, which wait until a call is in line).
  uint64_t waiting() const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return next_ticket_ - serving_;
  }

 private:
  void Put(uint64_t bytes) EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      used_ -= bytes;
    }
    cv_.SignalAll();
  }

  const uint64_t limit_;
  mutable Mutex mu_;
  CondVar cv_{&mu_};
  uint64_t used_ GUARDED_BY(mu_) = 0;
  uint64_t peak_ GUARDED_BY(mu_) = 0;
  uint64_t next_ticket_ GUARDED_BY(mu_) = 0;  // the next Acquire's place in line
  uint64_t serving_ GUARDED_BY(mu_) = 0;      // the place in line that may take bytes now
};

}  // namespace imgfs
