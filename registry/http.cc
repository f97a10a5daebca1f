#include "registry/http.h"

#include <dirent.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>

#include "base/ascii.h"
#include "base/log.h"
#include "base/mutex.h"
#include "base/strings.h"
#include "registry/curl_library.h"
#include "registry/reference.h"

namespace imgfs::registry {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// More header lines than any registry sends; beyond it the response is refused.
constexpr size_t kMaxHeaderLines = 1000;

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The proxy curl takes from the environment for `scheme` ("" when none): scheme_proxy, its
// upper-case form (which imgfs passes on itself for http), then ALL_PROXY. For messages only:
// NO_PROXY is not applied, so call it only when a proxy has answered.
std::string ProxyFromEnv(const std::string& scheme) {
  std::string upper = scheme == "https" ? "HTTPS_PROXY" : "HTTP_PROXY";
  for (const std::string& name :
       {scheme + "_proxy", upper, std::string("all_proxy"), std::string("ALL_PROXY")}) {
    if (const char* p = std::getenv(name.c_str()); p != nullptr && *p != '\0') return p;
  }
  return "";
}

}  // namespace

HostCerts FindHostCerts(std::string_view certs_dirs, std::string_view host_port) {
  HostCerts out;
  if (host_port.empty() || host_port.find('/') != std::string_view::npos || host_port == "." ||
      host_port == "..") {
    return out;
  }
  for (std::string_view base : Split(certs_dirs, ':')) {
    if (base.empty()) continue;
    std::string dir = std::string(base) + "/" + std::string(host_port);
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) continue;
    std::vector<std::string> certs;
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (EndsWith(name, ".crt")) out.ca_files.push_back(dir + "/" + name);
      if (EndsWith(name, ".cert")) certs.push_back(name);
    }
    closedir(d);
    std::sort(out.ca_files.begin(), out.ca_files.end());
    std::sort(certs.begin(), certs.end());
    for (const std::string& cert : certs) {
      std::string key = cert.substr(0, cert.size() - 5) + ".key";
      if (IsFile(dir + "/" + cert) && IsFile(dir + "/" + key)) {
        out.client_cert = dir + "/" + cert;
        out.client_key = dir + "/" + key;
        break;
      }
      IMGFS_LOG(kWarning, "client certificate " << dir << "/" << cert << " has no key " << key
                                                << " beside it; not used");
    }
    out.dir = dir;
    return out;  // the first directory that has one for this host, as containers/image does
  }
  return out;
}

namespace {

// What one Perform call shares with curl's callbacks.
struct Exchange {
  const HttpRequest* request = nullptr;
  HttpResponse* response = nullptr;
  std::vector<std::string> extra_ca_files;
  // Set by a callback that caught an exception; the transfer is aborted and this returned.
  Status callback_error;
  // No byte moved for this long aborts the transfer. curl's own low-speed check averages
  // over several seconds, so after a burst it notices silence seconds late.
  std::chrono::seconds stall_timeout{0};
  curl_off_t moved = -1;  // bytes received and sent at the last progress
  std::chrono::steady_clock::time_point moved_at;
  bool stalled = false;
};

// Runs `body` for a curl callback; an exception becomes ex->callback_error and `on_throw`.
// Curl is C: an exception unwinding through it would skip its cleanup and corrupt the handle.
template <typename R, typename F>
R Guarded(Exchange* ex, R on_throw, F&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    ex->callback_error = Status::Internal(std::string("while receiving: ") + e.what());
  } catch (...) {
    ex->callback_error = Status::Internal("while receiving: unknown exception");
  }
  return on_throw;
}

size_t OnHeader(char* data, size_t size, size_t nitems, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  size_t len = size * nitems;
  return Guarded<size_t>(ex, 0, [&]() -> size_t {
    std::string_view line(data, len);
    line = Trim(line);
    if (line.rfind("HTTP/", 0) == 0) {
      // A new response starts (after 100-continue or a proxy's CONNECT answer): forget the last.
      ex->response->headers.clear();
      size_t sp = line.find(' ');
      ex->response->status = sp == std::string_view::npos
                                 ? 0
                                 : std::atoi(std::string(line.substr(sp + 1, 3)).c_str());
      return len;
    }
    size_t colon = line.find(':');
    if (colon != std::string_view::npos && colon > 0) {
      // Headers are buffered like a body: a server that sends endless headers is cut off.
      if (ex->response->headers.size() >= kMaxHeaderLines) {
        ex->callback_error = Status::Corrupt("the response has more than " +
                                             std::to_string(kMaxHeaderLines) + " header lines");
        return 0;
      }
      ex->response->headers.emplace_back(AsciiLower(Trim(line.substr(0, colon))),
                                         std::string(Trim(line.substr(colon + 1))));
    }
    return len;
  });
}

size_t OnBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  size_t len = size * nmemb;
  return Guarded<size_t>(ex, 0, [&]() -> size_t {
    HttpResponse* resp = ex->response;
    std::string_view chunk(data, len);
    if (ex->request->sink && resp->status >= 200 && resp->status < 300) {
      if (!ex->request->sink(chunk)) {
        resp->stopped_by_sink = true;
        return 0;
      }
      return len;
    }
    uint64_t room = ex->request->max_body > resp->body.size()
                        ? ex->request->max_body - resp->body.size()
                        : 0;
    if (len > room) {
      resp->body.append(data, static_cast<size_t>(room));
      resp->truncated = true;
      return 0;
    }
    resp->body.append(data, len);
    return len;
  });
}

int OnProgress(void* user, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t ulnow) noexcept {
  auto* ex = static_cast<Exchange*>(user);
  const std::atomic<bool>* cancel = ex->request->cancel;
  if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) return 1;
  const auto now = std::chrono::steady_clock::now();
  if (dlnow + ulnow != ex->moved) {
    ex->moved = dlnow + ulnow;
    ex->moved_at = now;
  } else if (ex->stall_timeout.count() > 0 && now - ex->moved_at >= ex->stall_timeout) {
    ex->stalled = true;
    return 1;
  }
  return 0;
}

CURLcode OnSslContext(CURL*, void* ssl_ctx, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  return Guarded<CURLcode>(ex, CURLE_ABORTED_BY_CALLBACK, [&] {
    X509_STORE* store = SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(ssl_ctx));
    for (const std::string& file : ex->extra_ca_files) {
      if (X509_STORE_load_locations(store, file.c_str(), nullptr) != 1) {
        IMGFS_LOG(kWarning, "could not load CA certificates from " << file);
      }
    }
    return CURLE_OK;
  });
}

using SlistPtr = CurlSlistPtr;
using EasyPtr = CurlEasyPtr;
using SharePtr = CurlSharePtr;

// Appends `line` to *list; false when curl could not allocate.
bool SlistAppend(SlistPtr* list, const std::string& line) {
  curl_slist* grown = LoadedCurl().slist_append(list->get(), line.c_str());
  if (grown == nullptr) return false;  // the old list is still owned by *list
  (void)list->release();
  list->reset(grown);
  return true;
}

class CurlTransport : public HttpTransport {
 public:
  // Loads nothing: libcurl is loaded by the first Perform (curl_library.h).
  explicit CurlTransport(CurlTransportOptions options) : options_(std::move(options)) {}

  ~CurlTransport() override {
    pool_.clear();  // the handles go before the share they use
    share_.reset();
  }

  Status Perform(const HttpRequest& request, HttpResponse* response) override {
    *response = HttpResponse();
    if (request.cancel != nullptr && request.cancel->load()) {
      return Status::Unavailable("transfer cancelled");
    }
    IMGFS_RETURN_IF_ERROR(Start());
    const CurlLibrary& curl = LoadedCurl();
    Lease lease(this);
    CURL* h = lease.get();
    if (h == nullptr) return Status::Internal("curl_easy_init failed");
    Exchange ex;
    ex.request = &request;
    ex.response = response;
    char errbuf[CURL_ERROR_SIZE] = {0};
    SlistPtr headers;
    for (const std::string& line : request.headers) {
      if (!SlistAppend(&headers, line)) return Status::Internal("out of memory for headers");
    }
    // Without this curl would send "Expect:" or default Accept headers we did not ask for.
    if (!SlistAppend(&headers, "Expect:")) return Status::Internal("out of memory for headers");

    if (share_) curl.easy_setopt(h, CURLOPT_SHARE, share_.get());
    curl.easy_setopt(h, CURLOPT_URL, request.url.c_str());
    curl.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl.easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl.easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl.easy_setopt(h, CURLOPT_USERAGENT, options_.user_agent.c_str());
    curl.easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
    curl.easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
    curl.easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(options_.stall_bytes_per_s));
    curl.easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.stall_timeout_s));
    curl.easy_setopt(h, CURLOPT_HEADERFUNCTION, &OnHeader);
    curl.easy_setopt(h, CURLOPT_HEADERDATA, &ex);
    curl.easy_setopt(h, CURLOPT_WRITEFUNCTION, &OnBody);
    curl.easy_setopt(h, CURLOPT_WRITEDATA, &ex);
    ex.stall_timeout = std::chrono::seconds(options_.stall_timeout_s);
    curl.easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &OnProgress);
    curl.easy_setopt(h, CURLOPT_XFERINFODATA, &ex);
    curl.easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    if (request.method == "HEAD") {
      curl.easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (request.method == "POST" || request.method == "PUT") {
      curl.easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
      curl.easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
      // The pool's curl_easy_reset clears the custom method again.
      if (request.method == "PUT") curl.easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
    } else {
      curl.easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }

    auto [scheme, authority] = UrlSchemeAndAuthority(request.url);
    if (IsLoopbackHost(authority)) {
      curl.easy_setopt(h, CURLOPT_PROXY, "");  // Go's net/http never proxies loopback either
    } else if (scheme == "http" && std::getenv("http_proxy") == nullptr) {
      // curl reads only the lower-case http_proxy; docker users set HTTP_PROXY.
      if (const char* p = std::getenv("HTTP_PROXY"); p != nullptr && *p != '\0') {
        curl.easy_setopt(h, CURLOPT_PROXY, p);
      }
    }
    if (!request.verify_tls) {
      curl.easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
      curl.easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    HostCerts certs;
    if (scheme == "https") {
      certs = FindHostCerts(options_.certs_dir, CertsDirName(request.url));
      ex.extra_ca_files = certs.ca_files;
      if (!certs.client_cert.empty()) {
        curl.easy_setopt(h, CURLOPT_SSLCERT, certs.client_cert.c_str());
        curl.easy_setopt(h, CURLOPT_SSLKEY, certs.client_key.c_str());
      }
      if (!ex.extra_ca_files.empty()) {
        // A cached CA store would carry this host's extra CAs over to other hosts.
        curl.easy_setopt(h, CURLOPT_CA_CACHE_TIMEOUT, 0L);
        curl.easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, &OnSslContext);
        curl.easy_setopt(h, CURLOPT_SSL_CTX_DATA, &ex);
      }
    }

    CURLcode rc = curl.easy_perform(h);
    if (!ex.callback_error.ok()) return ex.callback_error;
    if (rc == CURLE_OK) return Status::Ok();
    if (rc == CURLE_WRITE_ERROR && (response->stopped_by_sink || response->truncated)) {
      return Status::Ok();
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK && ex.stalled) {
      return Status::Unavailable("transfer stalled (no data for " +
                                 std::to_string(options_.stall_timeout_s) + " s)");
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK) return Status::Unavailable("transfer cancelled");
    std::string message = errbuf[0] != '\0' ? std::string(errbuf) : curl.easy_strerror(rc);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    if (rc == CURLE_OPERATION_TIMEDOUT && message.find("too slow") != std::string::npos) {
      message = "transfer stalled (" + message + ")";
    }
    long connect_code = 0;  // the proxy's answer to CONNECT, 0 when none
    curl.easy_getinfo(h, CURLINFO_HTTP_CONNECTCODE, &connect_code);
    if (connect_code >= 300 || rc == CURLE_COULDNT_RESOLVE_PROXY) {
      std::string var = scheme == "https" ? "HTTPS_PROXY" : "HTTP_PROXY";
      message = "proxy " + ProxyFromEnv(std::string(scheme)) + " refused the connection to " +
                std::string(authority) + " (" + message + "); check " + var +
                ", or list the registry in NO_PROXY to reach it directly";
    }
    return Status::Unavailable(message);
  }

 private:
  // docker's certs.d directory name: the host and port as written in the reference.
  static std::string CertsDirName(std::string_view url) {
    size_t start = url.find("://");
    start = start == std::string_view::npos ? 0 : start + 3;
    std::string_view rest = url.substr(start);
    return std::string(rest.substr(0, rest.find_first_of("/?#")));
  }

  // Loads libcurl and makes the share, once per transport; every later call returns the
  // first call's outcome. Without a share (curl could not allocate one) handles go unshared.
  Status Start() {
    std::call_once(start_once_, [this] {
      Result<const CurlLibrary*> curl = LoadCurl();
      if (!curl.ok()) {
        start_status_ = curl.status();
        return;
      }
      const CurlLibrary& c = **curl;
      share_.reset(c.share_init());
      if (!share_) return;
      CURLSH* share = share_.get();
      c.share_setopt(share, CURLSHOPT_LOCKFUNC, &CurlTransport::Lock);
      c.share_setopt(share, CURLSHOPT_UNLOCKFUNC, &CurlTransport::Unlock);
      c.share_setopt(share, CURLSHOPT_USERDATA, this);
      c.share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
      c.share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
      c.share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    });
    return start_status_;
  }

  // A pooled easy handle for one Perform; back to the pool (reset) when the lease ends.
  class Lease {
   public:
    explicit Lease(CurlTransport* t) : transport_(t), handle_(t->Acquire()) {}
    ~Lease() {
      if (handle_) transport_->Release(std::move(handle_));
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    CURL* get() const { return handle_.get(); }

   private:
    CurlTransport* const transport_;
    EasyPtr handle_;
  };

  EasyPtr Acquire() {
    {
      MutexLock lock(&pool_mu_);
      if (!pool_.empty()) {
        EasyPtr h = std::move(pool_.back());
        pool_.pop_back();
        return h;
      }
    }
    return EasyPtr(LoadedCurl().easy_init());
  }

  void Release(EasyPtr h) {
    // reset keeps the handle's live connections and caches, which is the point of the pool.
    LoadedCurl().easy_reset(h.get());
    MutexLock lock(&pool_mu_);
    pool_.push_back(std::move(h));
  }

  // NO_THREAD_SAFETY_ANALYSIS: curl takes a lock in one callback and releases it in another.
  static void Lock(CURL*, curl_lock_data data, curl_lock_access,
                   void* user) noexcept NO_THREAD_SAFETY_ANALYSIS {
    static_cast<CurlTransport*>(user)->share_mu_[Index(data)].Lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) noexcept NO_THREAD_SAFETY_ANALYSIS {
    static_cast<CurlTransport*>(user)->share_mu_[Index(data)].Unlock();
  }
  static size_t Index(curl_lock_data data) {
    auto i = static_cast<size_t>(data);
    return i < kLocks ? i : 0;
  }

  static constexpr size_t kLocks = CURL_LOCK_DATA_LAST;

  // Constant after construction.
  const CurlTransportOptions options_;
  // What the handles share (DNS, TLS sessions, connections); curl locks it through Lock and
  // Unlock, one mutex per kind of data. Declared first, so destroyed after the share. Set
  // once by Start (start_once_), read only after it.
  std::array<Mutex, kLocks> share_mu_;
  std::once_flag start_once_;
  Status start_status_;
  SharePtr share_;

  // State below is protected by pool_mu_.
  Mutex pool_mu_;
  std::vector<EasyPtr> pool_ GUARDED_BY(pool_mu_);
};

}  // namespace

std::string HttpResponse::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return "";
}

std::vector<std::string> HttpResponse::AllHeaders(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : headers) {
    if (k == name) out.push_back(v);
  }
  return out;
}

std::unique_ptr<HttpTransport> NewCurlTransport(CurlTransportOptions options) {
  return std::make_unique<CurlTransport>(std::move(options));
}

std::pair<std::string, std::string> UrlSchemeAndAuthority(std::string_view url) {
  size_t sep = url.find("://");
  if (sep == std::string_view::npos || sep == 0) return {"", ""};
  std::string scheme = AsciiLower(url.substr(0, sep));
  std::string_view rest = url.substr(sep + 3);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (size_t at = authority.rfind('@'); at != std::string_view::npos)
    authority.remove_prefix(at + 1);
  std::string auth = AsciiLower(authority);
  if (scheme == "https" && auth.size() > 4 && auth.compare(auth.size() - 4, 4, ":443") == 0) {
    auth.resize(auth.size() - 4);
  } else if (scheme == "http" && auth.size() > 3 && auth.compare(auth.size() - 3, 3, ":80") == 0) {
    auth.resize(auth.size() - 3);
  }
  return {scheme, auth};
}

std::string ResolveUrl(std::string_view base, std::string_view location) {
  location = Trim(location);
  if (!UrlSchemeAndAuthority(location).first.empty()) return std::string(location);
  auto [scheme, authority] = UrlSchemeAndAuthority(base);
  if (location.rfind("//", 0) == 0) return scheme + ":" + std::string(location);
  size_t sep = base.find("://");
  size_t path_start = base.find('/', sep == std::string_view::npos ? 0 : sep + 3);
  std::string origin(base.substr(0, path_start));
  if (!location.empty() && location.front() == '/') return origin + std::string(location);
  // A relative path: replace the last segment of the base path.
  std::string_view path = path_start == std::string_view::npos ? "/" : base.substr(path_start);
  path = path.substr(0, path.find_first_of("?#"));
  return origin + std::string(path.substr(0, path.rfind('/') + 1)) + std::string(location);
}

}  // namespace imgfs::registry
