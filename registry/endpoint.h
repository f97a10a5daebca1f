// How imgfs reaches a registry: https with the certificate checked, or, for the registries
// the user marks insecure (ClientOptions::insecure_registries, `--insecure-registry`) and for
// loopback, the other ways docker allows.
//
// The endpoints of a registry host, tried in order (the next one only when the previous gave
// no HTTP answer at all: refused, TLS failure):
// - an insecure registry: https without checking the certificate, then plain http (docker's
//   order for its insecure-registries);
// - a loopback registry (localhost, 127.0.0.0/8, ::1) that is not marked insecure: plain
//   http, as imgfs always spoke to it; https with the certificate checked instead when a certs
//   directory has a directory for it (the user put a CA there, so it speaks TLS);
// - any other: https with the certificate checked (system CAs plus certs.d, http.h).
// An insecure entry is a host[:port] as the reference writes it ("r.example.com:5000",
// "10.1.2.3:5000"; a scheme or path is ignored), or an IPv4 CIDR ("10.0.0.0/8") that covers
// a registry named by its IP address, as in docker's daemon.json.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace imgfs::registry {

struct Endpoint {
  std::string base;  // "https://host:port"
  bool verify_tls = true;
};

// Whether `host` (host[:port]) is covered by one of the `insecure` entries.
bool IsInsecureRegistry(std::string_view host, const std::vector<std::string>& insecure);

std::vector<Endpoint> RegistryEndpoints(std::string_view host,
                                        const std::vector<std::string>& insecure,
                                        std::string_view certs_dirs);

// For a failure to reach `host` whose words (curl's) name a certificate problem: what to do
// about it, starting with " (" and ending with ")"; "" for other failures.
std::string CertificateHint(std::string_view error, std::string_view host,
                            std::string_view certs_dirs);

}  // namespace imgfs::registry
