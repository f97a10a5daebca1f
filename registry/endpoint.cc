#include "registry/endpoint.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>

#include "registry/http.h"
#include "registry/reference.h"

namespace imgfs::registry {
namespace {

// "10.1.2.3:5000" -> "10.1.2.3"; "[::1]:5000" -> "::1".
std::string HostOnly(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    return std::string(host.substr(1, close == std::string_view::npos ? 0 : close - 1));
  }
  if (std::count(host.begin(), host.end(), ':') == 1)
    return std::string(host.substr(0, host.find(':')));
  return std::string(host);
}

bool InCidr(const std::string& ip, std::string_view cidr) {
  size_t slash = cidr.find('/');
  in_addr addr, net;
  if (inet_pton(AF_INET, ip.c_str(), &addr) != 1) return false;
  if (inet_pton(AF_INET, std::string(cidr.substr(0, slash)).c_str(), &net) != 1) return false;
  int bits = std::atoi(std::string(cidr.substr(slash + 1)).c_str());
  if (bits < 0 || bits > 32) return false;
  uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  return (ntohl(addr.s_addr) & mask) == (ntohl(net.s_addr) & mask);
}

}  // namespace

bool IsInsecureRegistry(std::string_view host, const std::vector<std::string>& insecure) {
  for (const std::string& entry : insecure) {
    std::string_view e = entry;
    if (size_t sep = e.find("://"); sep != std::string_view::npos) e.remove_prefix(sep + 3);
    if (size_t slash = e.find('/');
        slash != std::string_view::npos &&
        e.find_first_not_of("0123456789", slash + 1) != std::string_view::npos) {
      e = e.substr(0, slash);  // a path, not a prefix length
    }
    if (e.find('/') != std::string_view::npos) {
      if (InCidr(HostOnly(host), e)) return true;
    } else if (e == host) {
      return true;
    }
  }
  return false;
}

std::vector<Endpoint> RegistryEndpoints(std::string_view host,
                                        const std::vector<std::string>& insecure,
                                        std::string_view certs_dirs) {
  const std::string h(host);
  if (IsInsecureRegistry(host, insecure)) {
    return {{"https://" + h, /*verify_tls=*/false}, {"http://" + h, false}};
  }
  if (IsLoopbackHost(host) && FindHostCerts(certs_dirs, host).dir.empty()) {
    return {{"http://" + h, false}};
  }
  return {{"https://" + h, true}};
}

std::string CertificateHint(std::string_view error, std::string_view host,
                            std::string_view certs_dirs) {
  if (error.find("certificate") == std::string_view::npos) return "";
  std::string_view first = certs_dirs.substr(0, certs_dirs.find(':'));
  if (first.empty()) first = "/etc/docker/certs.d";
  const std::string h(host);
  return " (the registry's TLS certificate is not trusted here: put the CA that signed it in " +
         std::string(first) + "/" + h + "/ca.crt (another directory: --certs-dir or " +
         "$IMGFS_CERTS_DIR), or, on a network you trust, mark the registry insecure with " +
         "--insecure-registry " + h + ")";
}

}  // namespace imgfs::registry
