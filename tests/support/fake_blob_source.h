// FakeBlobSource: the one in-memory BlobSource of the unit tests, with fault injection.
//
// Blobs are served from memory: the constructor's blob (under its sha256 digest) and any
// added with Add. With Serve::kAnyDigest the constructor's blob answers whatever digest is
// asked for (the TOC readers' tests describe layers by digests that are not the blob's).
// A digest it does not hold is kNotFound; a range past the blob's end is kNotFound too.
// ReadAll streams a blob in uneven pieces (1..100000 bytes, the same on every run), as a
// network would.
//
// Faults (settable at any time, from any thread) apply to ReadRange, in this order:
//   Block()/Unblock()   requests wait at a gate until Unblock: a registry that holds a
//                       request for as long as the test wants, no timing involved
//   SetRendezvous(n)    each request waits (up to 10 s) until n requests have arrived
//   SetDelay(d)         each request (ReadAll too) takes d longer: a slow registry
//   ThrowNext(n[, kNotAnException])
//                       the next n requests throw std::runtime_error (or an int: something
//                       that is not even a std::exception)
//   FailWith(s)         every request returns s until FailWith(Status::Ok())
//   FailNext(n, s)      the next n requests return s
//   CorruptNext(n), CorruptAlways(on)
//                       the middle byte of the next n (or every) response is served damaged
//   FlipAt(offset[, digest])
//                       the byte at `offset` of blob `digest` (default: of every blob) is
//                       served damaged from now on
//   Heal()              no more corruption or flips
// Counters: requests (ReadRange calls), read_alls, bytes (asked for), the ranges asked for,
// requests per digest, the most requests (and bytes) inside at once, and WaitForInside.
//
// Thread-safety: all members are safe to use concurrently. Blobs must be added before the
// source is shared between threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/blob_source.h"
#include "base/status.h"

namespace imgfs::test {

class FakeBlobSource : public BlobSource {
 public:
  enum class Serve { kOwnDigest, kAnyDigest };

  FakeBlobSource() = default;
  explicit FakeBlobSource(std::string blob, Serve serve = Serve::kOwnDigest);

  // Keeps `bytes` under `digest` (default: their sha256). Returns the digest.
  std::string Add(std::string bytes);
  void Add(const std::string& digest, std::string bytes);

  Status ReadRange(std::string_view digest, uint64_t offset, uint64_t length,
                   std::string* out) override;
  Status ReadAll(std::string_view digest,
                 const std::function<Status(std::string_view)>& sink) override;

  // The constructor's blob and its digest.
  const std::string& blob() const { return blob_; }
  const std::string& digest() const { return digest_; }

  // --- Faults ---
  void Block();
  void Unblock();
  void SetRendezvous(int n) {
    arrived_ = 0;
    rendezvous_ = n;
  }
  void SetDelay(std::chrono::milliseconds d) { delay_ms_ = d.count(); }
  enum class Throw { kStdException, kNotAnException };
  void ThrowNext(int n, Throw what = Throw::kStdException) {
    throw_int_ = what == Throw::kNotAnException;
    throw_next_ = n;
  }
  void FailWith(Status s);
  void FailNext(int n, Status s);
  void CorruptNext(int n) { corrupt_next_ = n; }
  void CorruptAlways(bool on) { corrupt_always_ = on; }
  void FlipAt(uint64_t offset, std::string digest = "");
  void Heal();

  // --- Counters ---
  int requests() const { return requests_.load(); }
  int read_alls() const { return read_alls_.load(); }
  uint64_t bytes() const { return bytes_.load(); }
  int inside() const { return inside_.load(); }
  int max_inside() const { return max_inside_.load(); }
  // The most bytes asked for by requests inside ReadRange at once.
  uint64_t max_bytes_inside() const { return max_bytes_inside_.load(); }
  std::vector<std::pair<uint64_t, uint64_t>> ranges() const;  // (offset, length), in order
  int RequestsOf(const std::string& digest) const;
  void ResetCounts();
  // Waits until at least `n` requests are inside ReadRange at once (false after `timeout`).
  bool WaitForInside(int n, std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  const std::string* Find(std::string_view digest) const;
  Status InjectBefore(uint64_t length);  // gate, rendezvous, delay, throw, failures

  std::map<std::string, std::string, std::less<>> blobs_;  // read-only once shared
  std::string blob_;
  std::string digest_;
  bool any_digest_ = false;

  std::atomic<int> rendezvous_{0};
  std::atomic<int> arrived_{0};  // requests since SetRendezvous
  std::atomic<int64_t> delay_ms_{0};
  std::atomic<int> throw_next_{0};
  std::atomic<bool> throw_int_{false};
  std::atomic<int> corrupt_next_{0};
  std::atomic<bool> corrupt_always_{false};

  std::atomic<int> requests_{0};
  std::atomic<int> read_alls_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<int> inside_{0};
  std::atomic<int> max_inside_{0};
  std::atomic<uint64_t> max_bytes_inside_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;                           // gate, rendezvous, inside changes
  bool blocked_ = false;                                 // GUARDED_BY(mu_)
  Status fail_;                                          // GUARDED_BY(mu_)
  int fail_next_ = 0;                                    // GUARDED_BY(mu_)
  Status fail_next_status_;                              // GUARDED_BY(mu_)
  std::set<std::pair<uint64_t, std::string>> flips_;     // GUARDED_BY(mu_): offset, digest
  std::vector<std::pair<uint64_t, uint64_t>> ranges_;    // GUARDED_BY(mu_)
  uint64_t bytes_inside_ = 0;                            // GUARDED_BY(mu_)
  std::map<std::string, int, std::less<>> requests_of_;  // GUARDED_BY(mu_)
};

}  // namespace imgfs::test
