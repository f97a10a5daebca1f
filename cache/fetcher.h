// Fetcher: the fetching half of the content store (cvmfs's Fetcher to UnitStore's cache
// manager). It serves a unit from the store when it is there and intact, else fetches it from
// a BlobSource, verifies it, hands it to the store and returns it. Cache::ReadUnit and
// Cache::FetchUnits (cache/cache.h has their contracts) are its two entry points.
//
// What it owns: one SingleFlight over units (concurrent ReadUnit and FetchUnits calls for one
// unit in this process share one fetch; the flight completes on every exit path, so a failing
// or throwing fetch answers its waiters), the coalescing of FetchUnits' missing units into few
// range requests, their fan-out over up to kFetchParallelism threads, the count of range
// requests in flight, and the budget of bytes they hold (base/byte_budget.h): a request
// takes its length from the budget before it is sent and gives it back once its units are
// verified, stored and handed on, so all fetches together hold at most `budget_bytes`
// (kFetchBudgetBytes) of fetched bytes; a request larger than the budget waits until it is
// alone. A flight's bytes are kept for its waiters only when it has any.
//
// Exceptions from the BlobSource and from a UnitRef's verify, and bad_alloc of a request, are
// caught here and become kInternal: nothing thrown below crosses ReadUnit or FetchUnits.
//
// Thread-safety: all methods may be called from many threads at once. `store` is borrowed.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/byte_budget.h"
#include "base/single_flight.h"
#include "base/status.h"
#include "cache/cache.h"
#include "cache/unit_store.h"

namespace imgfs::cache {

class Fetcher {
 public:
  explicit Fetcher(UnitStore* store, uint64_t budget_bytes = kFetchBudgetBytes)
      : store_(store), budget_(budget_bytes) {}

  Result<std::string> ReadUnit(const UnitRef& unit, BlobSource* source);
  Status FetchUnits(const std::vector<UnitRef>& units, BlobSource* source,
                    uint64_t max_request_bytes);
  int FetchesInFlight() const { return fetches_in_flight_.load(); }
  // Fetched bytes held now and the most held at once (never above the budget).
  uint64_t BudgetUsed() const { return budget_.used(); }
  uint64_t BudgetPeak() const { return budget_.peak(); }

 private:
  using Flights = SingleFlight<std::string, std::string>;
  struct FetchJob;

  std::string Prefix() const { return "cache " + store_->root() + ": "; }
  // The fetch a ReadUnit leads: the store once more (another thread may have published the
  // unit since our miss), else FetchVerifyStore.
  Result<std::string> FetchAndStore(const UnitRef& unit, BlobSource* source);
  // Up to `attempts` fetches of the unit alone until one verifies; stores it.
  Result<std::string> FetchVerifyStore(const UnitRef& unit, BlobSource* source, int attempts);
  // One FetchUnits request: `jobs` (sorted, one blob) from one ReadRange.
  void FetchGroup(const std::vector<FetchJob*>& jobs, BlobSource* source);
  void Finish(FetchJob* job, Result<std::string> result);
  // Finish with a unit verified in a coalesced response: copied only when someone waits.
  void FinishVerified(FetchJob* job, std::string_view bytes);
  // source->ReadRange, counted in fetches_in_flight_, exceptions caught.
  Status SourceRead(BlobSource* source, std::string_view blob, uint64_t offset, uint64_t length,
                    std::string* out);

  // Constant after construction.
  UnitStore* const store_;

  Flights flights_;    // thread-safe itself
  ByteBudget budget_;  // thread-safe itself
  std::atomic<int> fetches_in_flight_{0};
};

}  // namespace imgfs::cache
