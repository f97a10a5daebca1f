#include "registry/curl_library.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>
#include <type_traits>

namespace imgfs::registry {
namespace {

constexpr const char* kSoname = "libcurl.so.4";
constexpr const char* kInstall = "install the libcurl4 package (scripts/setup does)";

std::atomic<const CurlLibrary*> loaded{nullptr};

// Fills *out from `handle`; the name of the first missing symbol, or "" when all are there.
std::string ResolveAll(void* handle, CurlLibrary* out) {
  std::string missing;
  auto resolve = [&](auto& field, const char* name) {
    void* p = ::dlsym(handle, name);
    if (p == nullptr && missing.empty()) missing = name;
    field = reinterpret_cast<std::remove_reference_t<decltype(field)>>(p);
  };
  resolve(out->global_init, "curl_global_init");
  resolve(out->easy_init, "curl_easy_init");
  resolve(out->easy_setopt, "curl_easy_setopt");
  resolve(out->easy_perform, "curl_easy_perform");
  resolve(out->easy_getinfo, "curl_easy_getinfo");
  resolve(out->easy_reset, "curl_easy_reset");
  resolve(out->easy_cleanup, "curl_easy_cleanup");
  resolve(out->easy_strerror, "curl_easy_strerror");
  resolve(out->share_init, "curl_share_init");
  resolve(out->share_setopt, "curl_share_setopt");
  resolve(out->share_cleanup, "curl_share_cleanup");
  resolve(out->slist_append, "curl_slist_append");
  resolve(out->slist_free_all, "curl_slist_free_all");
  resolve(out->version_info, "curl_version_info");
  return missing;
}

Result<const CurlLibrary*> Load() {
  // RTLD_LOCAL: nothing else in the process binds to curl's symbols or its dependencies'.
  void* handle = ::dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return Status::Unavailable(std::string("cannot load ") + kSoname + " (" +
                               (why != nullptr ? why : "unknown error") + "): " + kInstall);
  }
  static CurlLibrary library;
  std::string missing = ResolveAll(handle, &library);
  if (!missing.empty()) {
    return Status::Unavailable(std::string(kSoname) + " has no " + missing + ": " + kInstall);
  }
  // CURLOPT_PROTOCOLS_STR and CURLOPT_CA_CACHE_TIMEOUT, used by the transport, are 7.85+;
  // an older library would ignore them silently.
  const curl_version_info_data* info = library.version_info(CURLVERSION_NOW);
  if (info == nullptr || info->version_num < LIBCURL_VERSION_NUM) {
    return Status::Unavailable(std::string(kSoname) + " is version " +
                               (info != nullptr ? info->version : "?") +
                               ", older than the " LIBCURL_VERSION " imgfs was built with: " +
                               kInstall);
  }
  if (CURLcode rc = library.global_init(CURL_GLOBAL_DEFAULT); rc != CURLE_OK) {
    return Status::Unavailable(std::string("curl_global_init failed: ") +
                               library.easy_strerror(rc));
  }
  loaded.store(&library, std::memory_order_release);
  return &library;
}

}  // namespace

Result<const CurlLibrary*> LoadCurl() {
  // A function-local static: initialised once, other callers wait for it (C++11 magic
  // statics), and a failure is remembered like a success.
  static const Result<const CurlLibrary*> result = Load();
  return result;
}

bool CurlLoaded() { return loaded.load(std::memory_order_acquire) != nullptr; }

const CurlLibrary& LoadedCurl() {
  const CurlLibrary* library = loaded.load(std::memory_order_acquire);
  if (library == nullptr) std::abort();  // a handle before LoadCurl: a bug, not input
  return *library;
}

}  // namespace imgfs::registry
