// CurlLibrary: libcurl, loaded when the first request needs it rather than at process start.
//
// libcurl4 brings 27 shared libraries of its own (nghttp2, librtmp with gnutls, krb5, ldap,
// ssh2, psl, ...). With the page cache dropped, mapping them costs about 30 ms of every start
// of the imgfs binary (a program linked with libcurl: 39 major page faults and ~43 ms; without
// it: 3 and ~11 ms), and most starts never talk to a registry: a warm mount, `imgfs ls` or
// `cat` of a cached image, `images`, `stats`. So imgfs is not linked against libcurl;
// LoadCurl opens libcurl.so.4 (the soname of the headers it is compiled with) on first use,
// as systemd does for its optional libraries. The table's types come from <curl/curl.h>, so a
// prototype that changes fails the build, not a call.
//
// Thread-safety: LoadCurl may be called from many threads at once; the first call loads the
// library (and runs curl_global_init) exactly once, and every later call returns the same
// table or the same error. The library is never unloaded.
#pragma once

#include <curl/curl.h>

#include <memory>

#include "base/status.h"

namespace imgfs::registry {

struct CurlLibrary {
  decltype(&::curl_global_init) global_init;
  decltype(&::curl_easy_init) easy_init;
  decltype(&::curl_easy_setopt) easy_setopt;
  decltype(&::curl_easy_perform) easy_perform;
  decltype(&::curl_easy_getinfo) easy_getinfo;
  decltype(&::curl_easy_reset) easy_reset;
  decltype(&::curl_easy_cleanup) easy_cleanup;
  decltype(&::curl_easy_strerror) easy_strerror;
  decltype(&::curl_share_init) share_init;
  decltype(&::curl_share_setopt) share_setopt;
  decltype(&::curl_share_cleanup) share_cleanup;
  decltype(&::curl_slist_append) slist_append;
  decltype(&::curl_slist_free_all) slist_free_all;
  decltype(&::curl_version_info) version_info;
};

// The loaded library with curl_global_init done, or kUnavailable naming the file that could
// not be loaded (or the symbol it lacks, or a version older than the headers') and the
// package to install.
Result<const CurlLibrary*> LoadCurl();

// Whether LoadCurl has loaded the library in this process.
bool CurlLoaded();

// The table LoadCurl loaded, for code that runs only after a successful LoadCurl (a handle's
// deleter, a request on a started transport). Calling it before is a bug: it aborts.
const CurlLibrary& LoadedCurl();

// Owners of curl's objects; they free through LoadedCurl, so only what a loaded library made.
struct CurlSlistFree {
  void operator()(curl_slist* list) const { LoadedCurl().slist_free_all(list); }
};
struct CurlEasyCleanup {
  void operator()(CURL* h) const { LoadedCurl().easy_cleanup(h); }
};
struct CurlShareCleanup {
  void operator()(CURLSH* s) const { LoadedCurl().share_cleanup(s); }
};
using CurlSlistPtr = std::unique_ptr<curl_slist, CurlSlistFree>;
using CurlEasyPtr = std::unique_ptr<CURL, CurlEasyCleanup>;
using CurlSharePtr = std::unique_ptr<CURLSH, CurlShareCleanup>;

}  // namespace imgfs::registry
