#include "cli/store_blob.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/digest.h"
#include "base/log.h"
#include "cache/eviction.h"

namespace imgfs::cli {
namespace {

// Reads of the cache's complete copy during the pass: this many bytes at a time.
constexpr uint64_t kPassReadBytes = uint64_t{4} << 20;

}  // namespace

VerifiedBlob::VerifiedBlob(std::string digest, uint64_t size, const std::vector<fs::Unit>& units,
                           cache::Cache* cache, BlobSource* source)
    : digest_(std::move(digest)), size_(size), cache_(cache), source_(source) {
  std::vector<Span> from_index;
  for (const fs::Unit& u : units) {
    if (u.clen > 0 && u.coff + u.clen <= size_) from_index.push_back({u.coff, u.clen, u.sha256});
  }
  std::sort(from_index.begin(), from_index.end(),
            [](const Span& a, const Span& b) { return a.coff < b.coff; });
  // The cover: the index's units where they do not go back before what is covered already
  // (zran units may share one byte), pieces in the gaps.
  std::vector<Span> spans;
  uint64_t covered = 0;
  auto fill_to = [&](uint64_t end) {
    while (covered < end) {
      const uint64_t len = std::min(kPieceBytes, end - covered);
      spans.push_back({covered, len, ""});
      covered += len;
    }
  };
  for (Span& s : from_index) {
    if (s.coff + s.clen <= covered) continue;
    if (s.coff + 1 < covered) continue;  // overlaps more than one byte
    fill_to(s.coff);
    covered = s.coff + s.clen;
    spans.push_back(std::move(s));
  }
  fill_to(size_);
  MutexLock lock(&mu_);
  spans_ = std::move(spans);
}

Result<size_t> VerifiedBlob::Read(uint64_t offset, size_t len, char* out) {
  IMGFS_RETURN_IF_ERROR(Prepare());
  const uint64_t end = std::min<uint64_t>(size_, offset + len);
  uint64_t pos = offset;
  while (pos < end) {
    size_t i = 0;
    uint64_t coff = 0, clen = 0;
    {
      MutexLock lock(&mu_);
      // The last span starting at or before pos holds it (the cover has no holes).
      auto it = std::upper_bound(spans_.begin(), spans_.end(), pos,
                                 [](uint64_t p, const Span& s) { return p < s.coff; });
      i = static_cast<size_t>(std::prev(it) - spans_.begin());
      coff = spans_[i].coff;
      clen = spans_[i].clen;
    }
    IMGFS_ASSIGN_OR_RETURN(std::shared_ptr<const std::string> bytes, ReadSpan(i));
    const uint64_t stop = std::min(end, coff + clen);
    std::memcpy(out + (pos - offset), bytes->data() + (pos - coff), stop - pos);
    pos = stop;
  }
  return static_cast<size_t>(end > offset ? end - offset : 0);
}

Result<std::shared_ptr<const std::string>> VerifiedBlob::ReadSpan(size_t i) {
  cache::UnitRef ref;
  {
    MutexLock lock(&mu_);
    if (last_span_ == i && last_bytes_) return last_bytes_;
    ref = {digest_, spans_[i].coff, spans_[i].clen, spans_[i].sha256};
  }
  IMGFS_ASSIGN_OR_RETURN(std::string bytes, cache_->ReadUnit(ref, source_));
  auto shared = std::make_shared<const std::string>(std::move(bytes));
  MutexLock lock(&mu_);
  last_span_ = i;
  last_bytes_ = shared;
  return shared;
}

Status VerifiedBlob::Prepare() {
  {
    MutexLock lock(&mu_);
    if (prepared_) return Status::Ok();
  }
  MutexLock pass(&prepare_mu_);
  std::vector<Span> spans;
  {
    MutexLock lock(&mu_);
    if (prepared_) return Status::Ok();
    spans = spans_;
  }
  bool from_cache = false;
  Status hashed = HashWhole(/*allow_cached=*/true, &spans, &from_cache);
  if (!hashed.ok() && from_cache) {
    // A complete copy that no longer hashes to its digest (damaged on disk): drop it, fetch.
    IMGFS_LOG(kWarning, "store: " << hashed.ToString() << "; dropping the copy");
    IMGFS_RETURN_IF_ERROR(cache_->eviction().DropBlob(digest_));
    {
      MutexLock lock(&mu_);
      spans = spans_;
    }
    hashed = HashWhole(/*allow_cached=*/false, &spans, &from_cache);
  }
  IMGFS_RETURN_IF_ERROR(hashed);
  MutexLock lock(&mu_);
  spans_ = std::move(spans);
  prepared_ = true;
  return Status::Ok();
}

Status VerifiedBlob::HashWhole(bool allow_cached, std::vector<Span>* spans, bool* from_cache) {
  // One hasher per span without a digest, fed as the stream passes it; spans may share a byte,
  // so every span the bytes touch is fed.
  std::vector<std::unique_ptr<Sha256>> hashers(spans->size());
  Sha256 whole;
  uint64_t pos = 0;
  size_t first_open = 0;
  auto sink = [&](std::string_view bytes) {
    whole.Update(bytes);
    const uint64_t end = pos + bytes.size();
    while (first_open < spans->size() &&
           (*spans)[first_open].coff + (*spans)[first_open].clen <= pos) {
      ++first_open;
    }
    for (size_t i = first_open; i < spans->size() && (*spans)[i].coff < end; ++i) {
      Span& s = (*spans)[i];
      if (!s.sha256.empty()) continue;
      const uint64_t from = std::max(pos, s.coff), to = std::min(end, s.coff + s.clen);
      if (from >= to) continue;
      if (!hashers[i]) hashers[i] = std::make_unique<Sha256>();
      hashers[i]->Update(bytes.substr(from - pos, to - from));
      if (to == s.coff + s.clen) {
        s.sha256 = hashers[i]->FinishDigest();
        hashers[i].reset();
      }
    }
    pos = end;
  };
  *from_cache = allow_cached && cache_->GetBlobStats(digest_).complete;
  IMGFS_RETURN_IF_ERROR(*from_cache ? StreamCached(sink) : FetchWhole(sink));
  if (const std::string got = whole.FinishDigest(); got != digest_ || pos != size_) {
    return Status::DigestMismatch(std::string(*from_cache ? "the cached copy of " : "") +
                                  "layer blob " + digest_ + " has " + std::to_string(pos) +
                                  " bytes with digest " + got + "; none of it is served");
  }
  return Status::Ok();
}

Status VerifiedBlob::StreamCached(const std::function<void(std::string_view)>& sink) {
  // Nothing read here is served: the pass hashes it whole against the digest first.
  auto accept = [](std::string_view) { return Status::Ok(); };
  for (uint64_t off = 0; off < size_; off += kPassReadBytes) {
    cache::UnitRef range{digest_, off, std::min(kPassReadBytes, size_ - off), "", accept};
    Result<std::string> bytes = cache_->ReadUnit(range, nullptr);
    // Evicted meanwhile: the next read's pass fetches it whole.
    if (!bytes.ok()) {
      return bytes.status().WithContext("re-hashing the cached copy of layer blob " + digest_);
    }
    sink(*bytes);
  }
  return Status::Ok();
}

Status VerifiedBlob::FetchWhole(const std::function<void(std::string_view)>& sink) {
  if (source_ == nullptr) return Status::Unavailable("blob " + digest_ + " not cached; offline");
  IMGFS_ASSIGN_OR_RETURN(std::unique_ptr<cache::BlobWriter> writer,
                         cache_->CreateBlobWriter(digest_, size_));
  // What a transfer that died left is not trusted here: the registry's bytes are hashed whole.
  if (writer->resumed_bytes() > 0) IMGFS_RETURN_IF_ERROR(writer->Restart());
  uint64_t seen = 0;
  Status read = source_->ReadAll(digest_, [&](std::string_view bytes) -> Status {
    seen += bytes.size();
    if (seen > size_) return Status::Corrupt("blob " + digest_ + " is longer than its descriptor");
    sink(bytes);
    return writer->Append(bytes);
  });
  IMGFS_RETURN_IF_ERROR(read);
  // The writer hashes what it is given; its verdict, not a second hash of the same bytes.
  if (seen != size_ || !writer->CheckDigest().ok()) {
    return Status::DigestMismatch("layer blob " + digest_ + " from the registry does not match " +
                                  "its digest; nothing was kept");
  }
  IMGFS_LOG(kInfo, "store: fetched layer blob " << digest_ << " whole (" << size_ << " bytes)");
  return writer->Commit();
}

}  // namespace imgfs::cli
