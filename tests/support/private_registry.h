// PrivateRegistry: a registry that asks for credentials and holds the busybox test image, pushed
// with them. The set-up shared by the tests of credentials, logins and TLS.
//
// The registry's auth is htpasswd with `creds` unless RegistryOptions asks for token auth (its
// TokenServer must know `creds` then); the other options (TLS, a network namespace) pass
// through. The image is pushed as `repo`:v1 with `creds` and PushOptions' certificate directory.
// Failure: the registry's or the push's Status, naming what did not start or push.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"

namespace imgfs::test {

struct Credentials {
  std::string user;
  std::string password;
};

struct PrivateRegistry {
  std::unique_ptr<RegistryServer> registry;
  PushedImage image;  // busybox, `repo`:v1
};

Result<PrivateRegistry> StartPrivateRegistry(const Credentials& creds, const std::string& repo,
                                             RegistryOptions options = {}, PushOptions push = {});

}  // namespace imgfs::test
