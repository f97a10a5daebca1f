// SingleFlight<K, V>: one execution per key at a time; callers that ask for a key whose
// execution is running wait for it and get its result (Go's singleflight, cvmfs's "concurrent
// download requests for the same id are collapsed").
//
//   SingleFlight<std::string, Blob> fetches;
//   Result<Blob> r = fetches.Do(id, [&] { return Fetch(id); });
//
// Do runs `fn` in the calling thread when no flight for the key is running (the caller leads
// it), else blocks until the running flight completes and returns a copy of its Result. Nothing
// is remembered after a flight completes: the next Do for the key runs `fn` again (results are
// cached elsewhere: the store, an LRU).
//
// Join/Call are the pieces of Do for callers that lead many flights at once and complete them
// from other threads (Cache::FetchUnits): Join makes the caller the leader of a new flight or a
// waiter of the running one; a leader's Call must be completed exactly once.
//
// Every exit path completes a flight: a leader whose `fn` throws, or whose Call is destroyed
// without Complete (an early return, an exception, a cancelled job), completes it with
// kInternal, so waiters always get an answer, never a hang. The leader's own exception still
// propagates to the leader's caller.
//
// Thread-safety: all methods may be called from many threads at once. A Call belongs to one
// thread at a time (it may be moved to another). V must be copyable: each waiter gets a copy.
#pragma once

#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "base/mutex.h"
#include "base/status.h"
#include "base/thread_annotations.h"

namespace imgfs {

template <typename K, typename V, typename Less = std::less<K>>
class SingleFlight {
  struct Flight {
    Mutex mu;
    CondVar cv{&mu};
    std::optional<Result<V>> result GUARDED_BY(mu);  // set once, by the leader
    int waiters GUARDED_BY(mu) = 0;                  // callers blocked in Wait now
  };

 public:
  // One caller's part in a flight: its leader or one of its waiters. Move-only.
  class Call {
   public:
    Call(Call&& other) noexcept
        : group_(other.group_),
          key_(std::move(other.key_)),
          flight_(std::move(other.flight_)),
          leader_(other.leader_) {
      other.leader_ = false;
    }
    Call& operator=(Call&&) = delete;
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

    // A leader that never completed its flight completes it now, with an error.
    ~Call() {
      if (!leader_) return;
      Complete(Status::Internal(std::uncaught_exceptions() > 0
                                    ? "the work this call waited for threw an exception"
                                    : "the work this call waited for ended without a result"));
    }

    bool leader() const { return leader_; }

    // REQUIRES: leader(), not completed yet. Hands `result` to every waiter and frees the key,
    // so the next Join of it starts a new flight. The Call is no longer the leader after this.
    void Complete(Result<V> result) {
      CompleteWith([&result] { return std::move(result); });
    }

    // Complete with `make()` (a Result<V>), which runs only when another caller holds the
    // flight: nobody waits otherwise, and nobody can start to once the key is freed, so a
    // result nobody would read is neither made nor kept (a unit's bytes, say).
    template <typename Make>
    void CompleteWith(Make&& make) {
      if (!leader_) return;
      leader_ = false;
      group_->Erase(key_, flight_);
      // Join copies flight pointers under the group's mutex, which Erase took after it: every
      // caller that joined this flight is counted here. Ours is the last reference otherwise.
      std::shared_ptr<Flight> flight = std::move(flight_);
      if (flight.use_count() == 1) return;
      {
        MutexLock lock(&flight->mu);
        flight->result.emplace(std::forward<Make>(make)());
      }
      flight->cv.SignalAll();
    }

    // REQUIRES: !leader(), and the Call never led (a leader has no result to wait for).
    // Blocks until the leader completes; a copy of its result.
    Result<V> Wait() {
      if (leader_ || !flight_) {
        return Status::Internal("SingleFlight: the leader of a flight waited on it");
      }
      MutexLock lock(&flight_->mu);
      ++flight_->waiters;
      while (!flight_->result.has_value()) flight_->cv.Wait();
      --flight_->waiters;
      return *flight_->result;
    }

   private:
    friend class SingleFlight;
    Call(SingleFlight* group, K key, std::shared_ptr<Flight> flight, bool leader)
        : group_(group), key_(std::move(key)), flight_(std::move(flight)), leader_(leader) {}

    SingleFlight* group_;
    K key_;
    std::shared_ptr<Flight> flight_;
    bool leader_;
  };

  SingleFlight() = default;
  SingleFlight(const SingleFlight&) = delete;
  SingleFlight& operator=(const SingleFlight&) = delete;

  // The leader of a new flight for `key`, or a waiter of the one running.
  Call Join(const K& key) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    auto [it, inserted] = flights_.try_emplace(key);
    if (inserted) it->second = std::make_shared<Flight>();
    return Call(this, key, it->second, inserted);
  }

  // `fn()` (a Result<V>) once for all concurrent callers of `key`; see the contract above.
  // `*waited` (when given) says whether this caller waited for another caller's flight.
  template <typename Fn>
  Result<V> Do(const K& key, Fn&& fn, bool* waited = nullptr) {
    Call call = Join(key);
    if (waited != nullptr) *waited = !call.leader();
    if (!call.leader()) return call.Wait();
    Result<V> result = std::forward<Fn>(fn)();
    call.CompleteWith([&result] { return result; });  // a copy only for waiters
    return result;
  }

  // Callers blocked waiting for the flight of `key` now (0 when none runs). For tests and
  // statistics: it lets a test hold a leader until its waiters are really waiting.
  int WaitersOf(const K& key) EXCLUDES(mu_) {
    std::shared_ptr<Flight> flight;
    {
      MutexLock lock(&mu_);
      auto it = flights_.find(key);
      if (it == flights_.end()) return 0;
      flight = it->second;
    }
    MutexLock lock(&flight->mu);
    return flight->waiters;
  }

  // Flights running now.
  size_t size() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return flights_.size();
  }

 private:
  // Frees `key` if `flight` still holds it.
  void Erase(const K& key, const std::shared_ptr<Flight>& flight) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    auto it = flights_.find(key);
    if (it != flights_.end() && it->second == flight) flights_.erase(it);
  }

  Mutex mu_;
  std::map<K, std::shared_ptr<Flight>, Less> flights_ GUARDED_BY(mu_);
};

}  // namespace imgfs
