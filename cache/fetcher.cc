#include "cache/fetcher.h"

#include <algorithm>
#include <exception>
#include <memory>
#include <system_error>
#include <thread>
#include <tuple>

#include "base/digest.h"
#include "base/log.h"
#include "cache/records.h"

namespace imgfs::cache {
namespace {

constexpr int kFetchAttempts = 2;

// Single-flight key: units differing in any field are different fetches.
std::string FlightKey(const UnitRef& unit) {
  return std::string(DigestHex(unit.blob)) + ":" + std::to_string(unit.coff) + ":" +
         std::to_string(unit.clen) + ":" + std::string(UnitShaHex(unit));
}

Status OfferedNothing(const UnitRef& unit) {
  return Status::Unavailable("bytes " + RangeText(unit) + " of blob " + unit.blob +
                             " are not in the cache and offline");
}

// The Status of an exception caught at this module's boundary.
Status FromException(std::string_view what) {
  try {
    throw;
  } catch (const std::exception& e) {
    return Status::Internal(std::string(what) + ": " + e.what());
  } catch (...) {
    return Status::Internal(std::string(what) + ": an exception of unknown type");
  }
}

}  // namespace

// A unit this FetchUnits call leads the fetch of; readers of the same unit wait on `call`.
struct Fetcher::FetchJob {
  const UnitRef* unit;
  Flights::Call call;
  Status status;  // the outcome, for FetchUnits' return value
};

Result<std::string> Fetcher::ReadUnit(const UnitRef& unit, BlobSource* source) {
  IMGFS_RETURN_IF_ERROR(CheckUnit(unit));
  IMGFS_ASSIGN_OR_RETURN(std::optional<std::string> stored, store_->ReadStored(unit));
  if (stored) {
    store_->TouchBlob(DigestHex(unit.blob));
    return std::move(*stored);
  }
  if (source == nullptr) return OfferedNothing(unit);
  try {
    return flights_.Do(FlightKey(unit), [&] { return FetchAndStore(unit, source); });
  } catch (...) {
    // The flight answered its waiters already (SingleFlight); this answers the leader.
    return FromException("fetching a unit");
  }
}

Result<std::string> Fetcher::FetchAndStore(const UnitRef& unit, BlobSource* source) {
  IMGFS_ASSIGN_OR_RETURN(std::optional<std::string> stored, store_->ReadStored(unit));
  if (stored) return std::move(*stored);
  return FetchVerifyStore(unit, source, kFetchAttempts);
}

Status Fetcher::SourceRead(BlobSource* source, std::string_view blob, uint64_t offset,
                           uint64_t length, std::string* out) {
  fetches_in_flight_.fetch_add(1);
  Status s;
  try {
    s = source->ReadRange(blob, offset, length, out);
  } catch (...) {
    s = FromException("blob source threw");
  }
  fetches_in_flight_.fetch_sub(1);
  return s;
}

Result<std::string> Fetcher::FetchVerifyStore(const UnitRef& unit, BlobSource* source,
                                              int attempts) {
  std::string bytes, actual;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    bytes.clear();
    // Held until the bytes are verified and stored; the caller's copy is its own.
    ByteBudget::Lease lease = budget_.Acquire(unit.clen);
    Status s = SourceRead(source, unit.blob, unit.coff, unit.clen, &bytes);
    if (!s.ok()) return s.WithContext("fetching bytes " + RangeText(unit) + " of " + unit.blob);
    if (VerifyUnitBytes(unit, bytes, &actual)) {
      Status stored = store_->Store(unit, bytes);
      // The bytes are verified: a full or failing disk costs the cache entry, not the read.
      if (!stored.ok()) IMGFS_LOG(kWarning, "not caching a verified unit: " << stored.ToString());
      return bytes;
    }
    IMGFS_LOG(kWarning, Prefix() << "fetched bytes " << RangeText(unit) << " of blob " << unit.blob
                                 << " do not verify: expected " << Expectation(unit) << ", got "
                                 << actual << " (attempt " << attempt << " of " << attempts << ")");
  }
  IMGFS_LOG(kError, Prefix() << "giving up on bytes " << RangeText(unit) << " of blob " << unit.blob
                             << " (coff " << unit.coff
                             << "): they do not verify; nothing was cached");
  return Status::DigestMismatch("bytes " + RangeText(unit) + " of blob " + unit.blob +
                                " do not match " + Expectation(unit) + " (got " + actual +
                                ") after " + std::to_string(kFetchAttempts) +
                                " fetches; nothing was cached");
}

void Fetcher::Finish(FetchJob* job, Result<std::string> result) {
  job->status = result.status();
  job->call.Complete(std::move(result));
}

void Fetcher::FinishVerified(FetchJob* job, std::string_view bytes) {
  job->status = Status::Ok();
  job->call.CompleteWith([bytes] { return Result<std::string>(std::string(bytes)); });
}

void Fetcher::FetchGroup(const std::vector<FetchJob*>& jobs, BlobSource* source) {
  auto fetch_alone = [&](FetchJob* job, int attempts) {
    Result<std::string> r = Status::Internal("unit fetch did not run");
    try {
      r = FetchVerifyStore(*job->unit, source, attempts);
    } catch (...) {
      r = FromException("fetching a unit");
    }
    Finish(job, std::move(r));
  };
  if (jobs.size() == 1) {
    fetch_alone(jobs[0], kFetchAttempts);
    return;
  }
  const UnitRef& first = *jobs.front()->unit;
  const uint64_t start = first.coff;
  const uint64_t end = jobs.back()->unit->coff + jobs.back()->unit->clen;
  ByteBudget::Lease lease = budget_.Acquire(end - start);
  std::string bytes;
  Status s;
  try {
    s = SourceRead(source, first.blob, start, end - start, &bytes);
  } catch (const std::bad_alloc&) {
    s = Status::Internal("out of memory for a " + std::to_string(end - start) + "-byte request");
  }
  if (s.ok() && bytes.size() != end - start) {
    s = Status::Unavailable("the source returned " + std::to_string(bytes.size()) +
                            " bytes instead of " + std::to_string(end - start));
  }
  if (!s.ok()) {
    s = s.WithContext("fetching bytes [" + std::to_string(start) + ", " + std::to_string(end) +
                      ") of " + first.blob);
    for (FetchJob* job : jobs) Finish(job, s);
    return;
  }
  std::vector<FetchJob*> failed;
  for (FetchJob* job : jobs) {
    const UnitRef& unit = *job->unit;
    std::string_view piece = std::string_view(bytes).substr(unit.coff - start, unit.clen);
    std::string actual;
    if (!VerifyUnitBytes(unit, piece, &actual)) {
      IMGFS_LOG(kWarning, Prefix()
                              << "fetched bytes " << RangeText(unit) << " of blob " << unit.blob
                              << " do not verify: expected " << Expectation(unit) << ", got "
                              << actual << " (coalesced fetch; fetching it alone)");
      failed.push_back(job);
      continue;
    }
    Status stored = store_->Store(unit, piece);
    if (!stored.ok()) IMGFS_LOG(kWarning, "not caching a verified unit: " << stored.ToString());
    FinishVerified(job, piece);
  }
  // The response and its share of the budget go before a unit that failed is fetched again,
  // which takes a share of its own (a lease must never wait while holding another).
  std::string().swap(bytes);
  lease.Release();
  for (FetchJob* job : failed) fetch_alone(job, kFetchAttempts - 1);
}

Status Fetcher::FetchUnits(const std::vector<UnitRef>& units, BlobSource* source,
                           uint64_t max_request_bytes) {
  for (const UnitRef& unit : units) IMGFS_RETURN_IF_ERROR(CheckUnit(unit));
  std::vector<const UnitRef*> sorted;
  sorted.reserve(units.size());
  for (const UnitRef& unit : units) sorted.push_back(&unit);
  std::sort(sorted.begin(), sorted.end(), [](const UnitRef* a, const UnitRef* b) {
    return std::tie(a->blob, a->coff, a->clen) < std::tie(b->blob, b->coff, b->clen);
  });

  Status first_error;
  auto note = [&](const Status& s) {
    if (!s.ok() && first_error.ok()) first_error = s;
  };
  // Leaders' jobs are completed on every path: by FetchGroup, below, or by their Call's
  // destructor when something throws on the way.
  std::vector<std::unique_ptr<FetchJob>> jobs;
  std::vector<Flights::Call> others;
  std::string last_key;
  for (const UnitRef* unit : sorted) {
    std::string key = FlightKey(*unit);
    if (key == last_key) continue;  // the same unit twice
    last_key = key;
    Result<bool> published = store_->IsPublished(*unit);
    if (!published.ok()) {
      note(published.status());
      continue;
    }
    if (*published) continue;
    if (source == nullptr) {
      note(OfferedNothing(*unit));
      continue;
    }
    Flights::Call call = flights_.Join(key);
    if (!call.leader()) {
      others.push_back(std::move(call));
      continue;
    }
    // A flight for this unit may have stored it and ended between the check above and Join;
    // the store is looked at once more, as a ReadUnit leader does, so it is not fetched twice.
    Result<std::optional<std::string>> stored = store_->ReadStored(*unit);
    if (!stored.ok() || *stored) {
      if (!stored.ok()) note(stored.status());
      call.Complete(stored.ok() ? Result<std::string>(std::move(**stored))
                                : Result<std::string>(stored.status()));
      continue;
    }
    jobs.push_back(std::unique_ptr<FetchJob>(new FetchJob{unit, std::move(call), Status()}));
  }

  // Runs of units close enough to share a request.
  std::vector<std::vector<FetchJob*>> groups;
  uint64_t group_start = 0, group_end = 0;
  for (auto& job : jobs) {
    const UnitRef& u = *job->unit;
    bool join = !groups.empty() && groups.back().back()->unit->blob == u.blob &&
                u.coff >= group_end && u.coff - group_end <= kCoalesceGapBytes &&
                u.coff + u.clen - group_start <= max_request_bytes;
    if (!join) {
      groups.emplace_back();
      group_start = u.coff;
    }
    groups.back().push_back(job.get());
    group_end = u.coff + u.clen;
  }

  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < groups.size();) {
      try {
        FetchGroup(groups[i], source);
      } catch (...) {
        IMGFS_LOG(kError, Prefix()
                              << FromException("fetching units failed unexpectedly").message());
      }
    }
  };
  std::vector<std::thread> helpers;
  size_t want = std::min<size_t>(kFetchParallelism, groups.size());
  for (size_t i = 1; i < want; ++i) {
    try {
      helpers.emplace_back(worker);
    } catch (const std::system_error& e) {
      // No thread to spare: the calling thread fetches the rest itself.
      IMGFS_LOG(kDebug, "FetchUnits runs with fewer threads: " << e.what());
      break;
    }
  }
  worker();
  for (std::thread& t : helpers) t.join();
  for (auto& job : jobs) {
    // Waiters must always get an answer, even when a group failed unexpectedly.
    if (job->call.leader())
      Finish(job.get(), Status::Internal("a unit fetch ended without a result"));
    note(job->status);
  }
  for (auto& call : others) note(call.Wait().status());
  return first_error;
}

}  // namespace imgfs::cache
