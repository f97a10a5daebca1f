#include "tests/support/fake_blob_source.h"

#include <algorithm>
#include <random>
#include <stdexcept>
#include <thread>

#include "base/digest.h"

namespace imgfs::test {

FakeBlobSource::FakeBlobSource(std::string blob, Serve serve)
    : blob_(blob), digest_(Sha256Digest(blob_)), any_digest_(serve == Serve::kAnyDigest) {
  blobs_[digest_] = std::move(blob);
}

std::string FakeBlobSource::Add(std::string bytes) {
  std::string digest = Sha256Digest(bytes);
  Add(digest, std::move(bytes));
  return digest;
}

void FakeBlobSource::Add(const std::string& digest, std::string bytes) {
  blobs_[digest] = std::move(bytes);
}

const std::string* FakeBlobSource::Find(std::string_view digest) const {
  auto it = blobs_.find(digest);
  if (it != blobs_.end()) return &it->second;
  if (any_digest_) return &blobs_.find(digest_)->second;
  return nullptr;
}

Status FakeBlobSource::InjectBefore(uint64_t length) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    arrived_.fetch_add(1);
    int now = inside_.fetch_add(1) + 1;
    int seen = max_inside_.load();
    while (now > seen && !max_inside_.compare_exchange_weak(seen, now)) {
    }
    bytes_inside_ += length;
    max_bytes_inside_ = std::max(max_bytes_inside_.load(), bytes_inside_);
    cv_.notify_all();
    cv_.wait(lock, [&] { return !blocked_; });
    if (int want = rendezvous_.load(); want > 0) {
      cv_.wait_for(lock, std::chrono::seconds(10), [&] { return arrived_.load() >= want; });
    }
  }
  if (int64_t ms = delay_ms_.load(); ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }
  auto leave = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    inside_.fetch_sub(1);
    bytes_inside_ -= length;
    cv_.notify_all();
  };
  if (throw_next_.fetch_sub(1) > 0) {
    leave();
    if (throw_int_.load()) throw 42;
    throw std::runtime_error("FakeBlobSource: injected exception");
  }
  leave();
  std::lock_guard<std::mutex> lock(mu_);
  if (!fail_.ok()) return fail_;
  if (fail_next_ > 0) {
    --fail_next_;
    return fail_next_status_;
  }
  return Status::Ok();
}

Status FakeBlobSource::ReadRange(std::string_view digest, uint64_t offset, uint64_t length,
                                 std::string* out) {
  requests_.fetch_add(1);
  bytes_.fetch_add(length);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ranges_.emplace_back(offset, length);
    ++requests_of_[std::string(digest)];
  }
  IMGFS_RETURN_IF_ERROR(InjectBefore(length));
  const std::string* blob = Find(digest);
  if (blob == nullptr) return Status::NotFound("no such blob " + std::string(digest));
  if (offset > blob->size() || length > blob->size() - offset) {
    return Status::NotFound("range " + std::to_string(offset) + "+" + std::to_string(length) +
                            " past the end of the blob");
  }
  const size_t start = out->size();
  out->append(*blob, offset, length);
  if (length > 0 && (corrupt_always_.load() || corrupt_next_.fetch_sub(1) > 0)) {
    (*out)[start + length / 2] ^= 0x01;
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = flips_.lower_bound({offset, ""});
       it != flips_.end() && it->first < offset + length; ++it) {
    if (it->second.empty() || it->second == digest) (*out)[start + (it->first - offset)] ^= 0x10;
  }
  return Status::Ok();
}

Status FakeBlobSource::ReadAll(std::string_view digest,
                               const std::function<Status(std::string_view)>& sink) {
  read_alls_.fetch_add(1);
  if (int64_t ms = delay_ms_.load(); ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!fail_.ok()) return fail_;
  }
  const std::string* blob = Find(digest);
  if (blob == nullptr) return Status::NotFound("no such blob " + std::string(digest));
  std::string_view all = *blob;
  std::mt19937 rng(static_cast<unsigned>(all.size()));
  while (!all.empty()) {
    size_t n = std::min<size_t>(all.size(), 1 + rng() % 100000);
    IMGFS_RETURN_IF_ERROR(sink(all.substr(0, n)));
    all.remove_prefix(n);
  }
  return Status::Ok();
}

void FakeBlobSource::Block() {
  std::lock_guard<std::mutex> lock(mu_);
  blocked_ = true;
}

void FakeBlobSource::Unblock() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    blocked_ = false;
  }
  cv_.notify_all();
}

void FakeBlobSource::FailWith(Status s) {
  std::lock_guard<std::mutex> lock(mu_);
  fail_ = std::move(s);
}

void FakeBlobSource::FailNext(int n, Status s) {
  std::lock_guard<std::mutex> lock(mu_);
  fail_next_ = n;
  fail_next_status_ = std::move(s);
}

void FakeBlobSource::FlipAt(uint64_t offset, std::string digest) {
  std::lock_guard<std::mutex> lock(mu_);
  flips_.insert({offset, std::move(digest)});
}

void FakeBlobSource::Heal() {
  std::lock_guard<std::mutex> lock(mu_);
  flips_.clear();
  corrupt_next_ = 0;
  corrupt_always_ = false;
}

std::vector<std::pair<uint64_t, uint64_t>> FakeBlobSource::ranges() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ranges_;
}

int FakeBlobSource::RequestsOf(const std::string& digest) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = requests_of_.find(digest);
  return it == requests_of_.end() ? 0 : it->second;
}

void FakeBlobSource::ResetCounts() {
  std::lock_guard<std::mutex> lock(mu_);
  ranges_.clear();
  requests_of_.clear();
  requests_ = 0;
  read_alls_ = 0;
  bytes_ = 0;
  max_inside_ = inside_.load();
  max_bytes_inside_ = bytes_inside_;
}

bool FakeBlobSource::WaitForInside(int n, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return inside_.load() >= n; });
}

}  // namespace imgfs::test
