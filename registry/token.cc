#include "registry/token.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "base/base64.h"

namespace imgfs::registry {

using nlohmann::json;

std::string UrlEncode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

bool UsesRefreshGrant(const Credentials* c) { return c != nullptr && !c->identity_token.empty(); }

HttpRequest BuildTokenRequest(const TokenRequest& r) {
  HttpRequest req;
  req.max_body = 1 << 20;
  const Credentials* c = r.credentials;
  if (UsesRefreshGrant(c)) {
    std::string scopes;
    for (const std::string& s : r.scopes) scopes += (scopes.empty() ? "" : " ") + s;
    req.method = "POST";
    req.url = r.realm;
    req.headers.push_back("Content-Type: application/x-www-form-urlencoded");
    req.body = "grant_type=refresh_token&refresh_token=" + UrlEncode(c->identity_token) +
               "&client_id=" + UrlEncode(kOAuthClientId);
    if (!r.service.empty()) req.body += "&service=" + UrlEncode(r.service);
    if (!scopes.empty()) req.body += "&scope=" + UrlEncode(scopes);
    if (r.offline) req.body += "&access_type=offline";
    return req;
  }
  std::string query;
  auto add = [&](const std::string& name, const std::string& value) {
    query += (query.empty() ? "" : "&") + name + "=" + UrlEncode(value);
  };
  if (!r.service.empty()) add("service", r.service);
  for (const std::string& s : r.scopes) add("scope", s);
  bool basic = c != nullptr && !(c->username.empty() && c->password.empty());
  if (basic) {
    add("account", c->username);
    req.headers.push_back("Authorization: Basic " + EncodeBase64(c->username + ":" + c->password));
  }
  if (r.offline) {
    add("offline_token", "true");
    add("client_id", kOAuthClientId);
  }
  req.url = r.realm;
  if (!query.empty()) req.url += (r.realm.find('?') == std::string::npos ? "?" : "&") + query;
  return req;
}

Result<TokenAnswer> ParseTokenAnswer(const HttpResponse& resp, const std::string& realm_host) {
  json doc = json::parse(resp.body, nullptr, /*allow_exceptions=*/false);
  TokenAnswer out;
  if (doc.is_object()) {
    auto str = [&](const char* k) {
      auto it = doc.find(k);
      return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    out.token = str("token");
    if (out.token.empty()) out.token = str("access_token");
    out.refresh_token = str("refresh_token");
    auto ex = doc.find("expires_in");
    if (ex != doc.end() && ex->is_number_integer()) out.expires_in_s = ex->get<int64_t>();
  }
  if (out.token.empty()) {
    return Status::Corrupt("token server " + realm_host + " sent no token");
  }
  out.expires_in_s = std::clamp<int64_t>(out.expires_in_s, 60, int64_t{24} * 3600);
  return out;
}

}  // namespace imgfs::registry
