// registry::Client: blob streams and ranges, resumed with a Range request where a broken
// stream stopped, within the transfer's failure budget.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "base/digest.h"
#include "base/log.h"
#include "registry/client_impl.h"

namespace imgfs::registry {
namespace {

// Bytes a 206 answer may run past the requested range before the transfer is cut off.
constexpr uint64_t kMaxRangeOverrun = 64 << 10;

// "bytes <first>-<last>/<total or *>" -> first and last.
bool ParseContentRange(std::string_view v, uint64_t* first, uint64_t* last) {
  if (v.rfind("bytes ", 0) != 0) return false;
  v.remove_prefix(6);
  size_t dash = v.find('-');
  size_t slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash)
    return false;
  auto parse = [](std::string_view s, uint64_t* out) {
    if (s.empty() || s.size() > 19) return false;
    uint64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    *out = n;
    return true;
  };
  return parse(v.substr(0, dash), first) && parse(v.substr(dash + 1, slash - dash - 1), last);
}

}  // namespace

Status Client::Impl::StreamBlob(const Reference& repo, std::string_view digest, uint64_t off,
                                std::optional<uint64_t> len,
                                const std::function<Status(std::string_view)>& sink) {
  Status valid = ValidateDigest(digest);
  if (!valid.ok()) return Status(valid.code(), "blob of " + repo.Repo() + ": " + valid.message());
  if (len && *len == 0) return Status::Ok();
  if (len && *len > std::numeric_limits<uint64_t>::max() - off) {
    return Status::InvalidArgument("blob range overflows");
  }
  const uint64_t end = len ? off + *len : std::numeric_limits<uint64_t>::max();
  uint64_t pos = off;
  int failures = 0;
  while (true) {
    Call call;
    call.repo = &repo;
    call.path = "/v2/" + repo.repository + "/blobs/" + std::string(digest);
    call.what = repo.Repo() + "@" + std::string(digest);
    call.failures = &failures;
    if (pos > 0 || len) {
      call.headers.push_back("Range: bytes=" + std::to_string(pos) + "-" +
                             (len ? std::to_string(end - 1) : std::string()));
      call.range_from = pos;
    }
    HttpResponse resp;
    Status sink_status;
    bool checked = false;
    uint64_t skip = 0;
    uint64_t overrun = 0;  // bytes after the range's end in a 206 response
    const uint64_t attempt_start = pos;
    call.sink = [&](std::string_view chunk) {
      if (!checked) {
        checked = true;
        if (resp.status == 206) {
          uint64_t first = 0;
          uint64_t last = 0;
          std::string range = resp.Header("content-range");
          if (!ParseContentRange(range, &first, &last) || first != pos ||
              (len && last != end - 1) || last < first) {
            sink_status = Status::Corrupt("registry " + repo.domain + " answered the range " +
                                          std::to_string(pos) + "-" +
                                          (len ? std::to_string(end - 1) : std::string()) + " of " +
                                          call.what + " with Content-Range '" + range + "'");
            return false;
          }
        } else {
          skip = pos;  // the whole blob from byte 0: Range was ignored
        }
      }
      if (skip > 0) {
        uint64_t n = std::min<uint64_t>(skip, chunk.size());
        chunk.remove_prefix(static_cast<size_t>(n));
        skip -= n;
      }
      uint64_t take = std::min<uint64_t>(chunk.size(), end - pos);
      if (take > 0) {
        Status s = sink(chunk.substr(0, static_cast<size_t>(take)));
        pos += take;
        if (!s.ok()) {
          sink_status = s;
          return false;
        }
      }
      if (pos < end) return true;
      // Done. An exact 206 is let run to its end, which is here or a few bytes on: aborting
      // a transfer closes its connection, and the next range request would pay a new one.
      // A whole blob sent for a range (200) is cut off at once.
      overrun += chunk.size() - take;
      return resp.status == 206 && overrun <= kMaxRangeOverrun;
    };
    Status st = Send(call, &resp);
    if (!sink_status.ok()) return sink_status;
    if (st.ok()) {
      if (resp.status < 200 || resp.status >= 300) return MapStatus(call, resp, /*manifest=*/false);
      if (!len || pos == end) return Status::Ok();
      return Status::Corrupt("blob " + call.what + " ended at byte " + std::to_string(pos) +
                             ", before the end of the requested range " + std::to_string(end));
    }
    if (st.code() == Code::kUnavailable && pos > attempt_start && !Cancelled() &&
        failures < options_.max_transfer_failures) {
      IMGFS_LOG(kInfo,
                "resuming " << call.what << " at byte " << pos << " after: " << st.message());
      continue;
    }
    if (st.code() == Code::kUnavailable && failures >= options_.max_transfer_failures) {
      return Status::Unavailable(st.message() + " (gave up on " + call.what + " after " +
                                 std::to_string(failures) + " failed attempts)");
    }
    return st;
  }
}

Status Client::GetBlobRange(const Reference& repo, std::string_view digest, uint64_t off,
                            uint64_t len, std::string* out) {
  std::string buf;
  if (len <= (256u << 20)) buf.reserve(static_cast<size_t>(len));
  IMGFS_RETURN_IF_ERROR(impl_->StreamBlob(repo, digest, off, len, [&](std::string_view chunk) {
    buf.append(chunk);
    return Status::Ok();
  }));
  out->append(buf);
  return Status::Ok();
}

Status Client::GetBlob(const Reference& repo, std::string_view digest,
                       const std::function<Status(std::string_view)>& sink) {
  return impl_->StreamBlob(repo, digest, 0, std::nullopt, sink);
}

Result<std::string> Client::GetBlobVerified(const Reference& repo, std::string_view digest,
                                            uint64_t max_size) {
  std::string buf;
  Sha256 hash;
  IMGFS_RETURN_IF_ERROR(
      impl_->StreamBlob(repo, digest, 0, std::nullopt, [&](std::string_view chunk) {
        if (buf.size() + chunk.size() > max_size) {
          return Status::Corrupt("blob " + repo.Repo() + "@" + std::string(digest) +
                                 " is larger than " + std::to_string(max_size) + " bytes");
        }
        buf.append(chunk);
        hash.Update(chunk);
        return Status::Ok();
      }));
  std::string got = hash.FinishDigest();
  if (got != digest) {
    return Status::DigestMismatch("blob " + repo.Repo() + "@" + std::string(digest) +
                                  ": the registry sent bytes with digest " + got);
  }
  return buf;
}

}  // namespace imgfs::registry
