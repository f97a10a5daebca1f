#include "tests/support/test_ca.h"

#include "tests/support/process.h"

namespace imgfs::test {

Result<std::unique_ptr<TestCa>> TestCa::Create() {
  if (!IsExecutable("/usr/bin/openssl")) {
    return Status::NotFound("openssl not installed: run scripts/setup");
  }
  std::unique_ptr<TestCa> ca(new TestCa());
  ca->cert_path_ = ca->dir_.Sub("ca.crt");
  ca->key_path_ = ca->dir_.Sub("ca.key");
  IMGFS_RETURN_IF_ERROR(RunOk({"openssl",
                               "req",
                               "-x509",
                               "-newkey",
                               "ec",
                               "-pkeyopt",
                               "ec_paramgen_curve:prime256v1",
                               "-nodes",
                               "-keyout",
                               ca->key_path_,
                               "-out",
                               ca->cert_path_,
                               "-days",
                               "2",
                               "-subj",
                               "/CN=imgfs test CA",
                               "-addext",
                               "basicConstraints=critical,CA:TRUE",
                               "-addext",
                               "keyUsage=critical,keyCertSign,cRLSign"}));
  return ca;
}

Result<IssuedCert> TestCa::Issue(const std::string& name, const std::string& extensions) {
  std::string base = dir_.Sub("cert" + std::to_string(++serial_));
  IssuedCert out{base + ".crt", base + ".key"};
  IMGFS_RETURN_IF_ERROR(WriteFile(base + ".ext", extensions));
  IMGFS_RETURN_IF_ERROR(
      RunOk({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", out.key_path, "-out", base + ".csr", "-subj", "/CN=" + name}));
  IMGFS_RETURN_IF_ERROR(RunOk({"openssl", "x509", "-req", "-in", base + ".csr", "-CA", cert_path_,
                               "-CAkey", key_path_, "-set_serial", std::to_string(serial_ + 1000),
                               "-out", out.cert_path, "-days", "2", "-extfile", base + ".ext"}));
  return out;
}

Result<IssuedCert> TestCa::IssueServer(const std::string& ip) {
  return Issue(ip, "subjectAltName=IP:" + ip +
                       "\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                       "extendedKeyUsage=serverAuth\n");
}

Result<IssuedCert> TestCa::IssueClient(const std::string& name) {
  return Issue(
      name, "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n");
}

}  // namespace imgfs::test
