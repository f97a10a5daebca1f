#include "registry/reference.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "base/ascii.h"
#include "base/digest.h"
#include "base/strings.h"

namespace imgfs::registry {
namespace {

constexpr std::string_view kDockerDomain = "docker.io";
constexpr size_t kNameTotalLengthMax = 255;

Status Invalid(std::string_view what) {
  return Status::InvalidArgument("invalid reference format: " + std::string(what));
}

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
bool IsWordChar(char c) { return IsAlnum(c) || c == '_'; }
bool IsHex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | "__" | [-]+
bool IsPathComponent(std::string_view c) {
  size_t i = 0;
  auto alnum_run = [&] {
    size_t start = i;
    while (i < c.size() && IsLowerAlnum(c[i])) ++i;
    return i > start;
  };
  if (!alnum_run()) return false;
  while (i < c.size()) {
    if (c[i] == '.') {
      ++i;
    } else if (c[i] == '_') {
      ++i;
      if (i < c.size() && c[i] == '_') ++i;
    } else if (c[i] == '-') {
      while (i < c.size() && c[i] == '-') ++i;
    } else {
      return false;
    }
    if (!alnum_run()) return false;
  }
  return true;
}

// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool IsDomainComponent(std::string_view c) {
  if (c.empty() || !IsAlnum(c.front()) || !IsAlnum(c.back())) return false;
  return std::all_of(c.begin(), c.end(), [](char ch) { return IsAlnum(ch) || ch == '-'; });
}

// domain := (domain-name | "[" ipv6 "]") (":" [0-9]+)?
bool IsDomain(std::string_view d) {
  std::string_view host = d;
  std::string_view port;
  if (!d.empty() && d.front() == '[') {
    size_t close = d.find(']');
    if (close == std::string_view::npos) return false;
    std::string inner(d.substr(1, close - 1));
    in6_addr addr;
    if (inet_pton(AF_INET6, inner.c_str(), &addr) != 1) return false;
    std::string_view rest = d.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
      if (port.empty()) return false;
    }
  } else {
    size_t colon = d.find(':');
    if (colon != std::string_view::npos) {
      host = d.substr(0, colon);
      port = d.substr(colon + 1);
      if (port.empty()) return false;
    }
    size_t start = 0;
    while (true) {
      size_t dot = host.find('.', start);
      if (!IsDomainComponent(
              host.substr(start, dot == std::string_view::npos ? dot : dot - start))) {
        return false;
      }
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
  }
  return std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// digest := algorithm ":" hex{32,}, algorithm := [A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*
bool IsDigestSyntax(std::string_view d) {
  size_t colon = d.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view algo = d.substr(0, colon);
  std::string_view hex = d.substr(colon + 1);
  bool need_alpha = true;
  for (char c : algo) {
    if (need_alpha) {
      if (!std::isalpha(static_cast<unsigned char>(c))) return false;
      need_alpha = false;
    } else if (c == '-' || c == '_' || c == '+' || c == '.') {
      need_alpha = true;
    } else if (!IsAlnum(c)) {
      return false;
    }
  }
  if (need_alpha) return false;
  return hex.size() >= 32 && std::all_of(hex.begin(), hex.end(), IsHex);
}

bool IsTag(std::string_view t) {
  if (t.empty() || t.size() > 128 || !IsWordChar(t.front())) return false;
  return std::all_of(t.begin(), t.end(),
                     [](char c) { return IsWordChar(c) || c == '.' || c == '-'; });
}

bool HasUpper(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

}  // namespace

Result<Reference> Reference::Parse(std::string_view s) {
  if (s.empty()) return Invalid("repository name must have at least one component");
  if (s.size() == 64 && std::all_of(s.begin(), s.end(), IsLowerAlnum) &&
      std::all_of(s.begin(), s.end(), IsHex)) {
    return Invalid("invalid repository name (" + std::string(s) +
                   "), cannot specify 64-byte hexadecimal strings");
  }

  Reference ref;
  std::string_view name_tag = s;
  size_t at = s.find('@');
  if (at != std::string_view::npos) {
    std::string_view digest = s.substr(at + 1);
    name_tag = s.substr(0, at);
    if (!IsDigestSyntax(digest)) {
      return Invalid("invalid digest format '" + std::string(digest) +
                     "' (expected sha256:<64 hex>)");
    }
    Status st = ValidateDigest(digest);
    if (!st.ok()) return Status(st.code(), "invalid reference format: " + st.message());
    ref.digest = std::string(digest);
  }

  std::string_view name = name_tag;
  size_t last_slash = name_tag.rfind('/');
  size_t colon = name_tag.rfind(':');
  if (colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || colon > last_slash)) {
    std::string_view tag = name_tag.substr(colon + 1);
    name = name_tag.substr(0, colon);
    if (!IsTag(tag)) {
      return Invalid("invalid tag '" + std::string(tag) +
                     "' (a tag is 1 to 128 of [A-Za-z0-9_.-] and does not start with '.' or '-')");
    }
    ref.tag = std::string(tag);
  }

  std::string_view path = name;
  size_t slash = name.find('/');
  std::string_view first = name.substr(0, slash);
  bool first_is_domain = slash != std::string_view::npos &&
                         (first.find_first_of(".:") != std::string_view::npos ||
                          first == "localhost" || HasUpper(first));
  if (first_is_domain) {
    ref.domain = std::string(first);
    path = name.substr(slash + 1);
    if (!IsDomain(first)) return Invalid("invalid registry domain '" + std::string(first) + "'");
  } else {
    ref.domain = std::string(kDockerDomain);
  }
  if (ref.domain == "index.docker.io") ref.domain = std::string(kDockerDomain);

  if (path.empty()) return Invalid("repository name must have at least one component");
  if (HasUpper(path)) {
    return Invalid("repository name (" + std::string(path) + ") must be lowercase");
  }
  for (std::string_view component : Split(path, '/')) {
    if (!IsPathComponent(component)) {
      return Invalid("repository name component '" + std::string(component) +
                     "' must be lowercase letters and digits, separated by '.', '_', '__' or '-'");
    }
  }
  ref.repository = std::string(path);
  if (ref.domain == kDockerDomain && ref.repository.find('/') == std::string::npos) {
    ref.repository = "library/" + ref.repository;
  }
  if (ref.domain.size() + 1 + ref.repository.size() > kNameTotalLengthMax) {
    return Invalid("repository name must not be more than 255 characters");
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

std::string Reference::String() const {
  std::string s = Repo();
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

std::string Reference::Repo() const { return domain + "/" + repository; }

std::string Reference::ApiHost() const {
  return domain == kDockerDomain ? "registry-1.docker.io" : domain;
}

bool Reference::IsInsecureLoopback() const { return IsLoopbackHost(domain); }

bool IsLoopbackHost(std::string_view host) {
  std::string h;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    h = std::string(host.substr(1, close - 1));
  } else if (std::count(host.begin(), host.end(), ':') == 1) {
    h = std::string(host.substr(0, host.find(':')));
  } else {
    h = std::string(host);
  }
  h = AsciiLower(h);
  if (h == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    return std::memcmp(&v6, &in6addr_loopback, sizeof v6) == 0;
  }
  return false;
}

}  // namespace imgfs::registry
