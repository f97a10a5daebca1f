// A certificate authority of one test, made with openssl, and the server certificates it
// signs: what a registry with a private CA looks like to its users.
//
// Keys are P-256 (quick to make); certificates last two days. Failure: a Status carrying
// openssl's output. Not thread-safe; the files live in the TestCa's temp dir.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "tests/support/files.h"

namespace imgfs::test {

struct IssuedCert {
  std::string cert_path;  // PEM
  std::string key_path;   // PEM, unencrypted
};

class TestCa {
 public:
  static Result<std::unique_ptr<TestCa>> Create();

  // The CA's certificate (what goes into certs.d/<host:port>/ca.crt).
  const std::string& cert_path() const { return cert_path_; }
  // A server certificate for `ip` (subjectAltName IP:ip), signed by this CA.
  Result<IssuedCert> IssueServer(const std::string& ip);
  // A client certificate (extendedKeyUsage clientAuth) for `name`, signed by this CA.
  Result<IssuedCert> IssueClient(const std::string& name);

 private:
  TestCa() : dir_("ca") {}
  Result<IssuedCert> Issue(const std::string& name, const std::string& extensions);
  TempDir dir_;
  std::string cert_path_;
  std::string key_path_;
  int serial_ = 0;
};

}  // namespace imgfs::test
