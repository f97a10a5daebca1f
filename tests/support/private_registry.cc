#include "tests/support/private_registry.h"

#include <utility>

#include "tests/support/test_world.h"

namespace imgfs::test {

Result<PrivateRegistry> StartPrivateRegistry(const Credentials& creds, const std::string& repo,
                                             RegistryOptions options, PushOptions push) {
  if (options.auth == RegistryOptions::Auth::kNone) options.auth = RegistryOptions::Auth::kHtpasswd;
  options.user = creds.user;
  options.password = creds.password;
  PrivateRegistry out;
  IMGFS_ASSIGN_OR_RETURN(out.registry, RegistryServer::Create(options));
  IMGFS_ASSIGN_OR_RETURN(const TestImages* images, TestWorld::Get().Images("busybox"));
  push.creds = creds.user + ":" + creds.password;
  IMGFS_ASSIGN_OR_RETURN(out.image,
                         images->Push("busybox", out.registry->host(), repo, "v1", push));
  return out;
}

}  // namespace imgfs::test
