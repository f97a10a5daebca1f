// `imgfs login` and `imgfs logout`, with docker's options and messages.
#include <termios.h>
#include <unistd.h>

#include <iostream>
#include <iterator>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"
#include "registry/credentials.h"
#include "registry/http.h"
#include "registry/login.h"

namespace imgfs::cli {
namespace {

void StripNewline(std::string* s) {
  while (!s->empty() && (s->back() == '\n' || s->back() == '\r')) s->pop_back();
}

// Asks on the terminal; the answer is not echoed when `secret`.
std::string Prompt(const std::string& question, bool secret) {
  std::cerr << question << std::flush;
  termios saved{};
  bool restore = secret && ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (restore) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string line;
  std::getline(std::cin, line);
  if (restore) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    std::cerr << "\n";
  }
  StripNewline(&line);
  return line;
}

Result<registry::Credentials> Check(const registry::ClientOptions& client,
                                    const std::string& domain, const registry::Credentials& c) {
  std::unique_ptr<registry::HttpTransport> transport = registry::NewCurlTransport(
      registry::TransportOptionsFor(client));
  return registry::CheckLogin(*transport, client, domain, c);
}

}  // namespace

int RunLogin(const LoginOptions& options) {
  Result<std::string> domain = registry::RegistryFromArgument(options.registry);
  if (!domain.ok()) return Fail(domain.status());
  const registry::ClientOptions client = DefaultClientOptions(options.common);
  registry::Credentials creds;
  creds.username = options.username;
  creds.password = options.password;
  if (!options.password.empty()) {
    std::cerr << "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n";
  }
  if (options.password_stdin) {
    if (options.username.empty()) {
      return Fail(Status::InvalidArgument("must provide --username with --password-stdin"));
    }
    creds.password.assign(std::istreambuf_iterator<char>(std::cin), {});
    StripNewline(&creds.password);
  }
  const bool interactive = ::isatty(STDIN_FILENO) == 1;
  if (creds.username.empty() && creds.password.empty()) {
    // As docker: the stored credentials first, when they still work.
    Result<std::optional<registry::Credentials>> stored = registry::LookupCredentials(
        client.docker_config_dir, *domain);
    if (!stored.ok()) return Fail(stored.status());
    if (stored->has_value()) {
      std::cerr << "Authenticating with existing credentials...\n";
      Result<registry::Credentials> ok = Check(client, *domain, **stored);
      if (ok.ok()) {
        std::cout << "Login Succeeded" << std::endl;
        return 0;
      }
      if (ok.status().code() != Code::kUnauthorized || !interactive) return Fail(ok.status());
      std::cerr << "Login did not succeed, error: " << ok.status().message() << "\n";
    }
    if (!interactive) {
      return Fail(Status::InvalidArgument(
          "cannot perform an interactive login from a non TTY device: give -u USER and "
          "--password-stdin (or -p PASS)"));
    }
  }
  if (creds.username.empty()) {
    if (!interactive) {
      return Fail(Status::InvalidArgument("a user name is needed: give -u USER"));
    }
    creds.username = Prompt("Username: ", /*secret=*/false);
    if (creds.username.empty()) return Fail(Status::InvalidArgument("username is required"));
  }
  if (creds.password.empty()) {
    if (!interactive) {
      return Fail(Status::InvalidArgument("a password is needed: give --password-stdin or -p"));
    }
    creds.password = Prompt("Password: ", /*secret=*/true);
    if (creds.password.empty()) return Fail(Status::InvalidArgument("password is required"));
  }
  Result<registry::Credentials> checked = Check(client, *domain, creds);
  if (!checked.ok()) return Fail(checked.status());
  Result<std::string> where = registry::StoreCredentials(client.docker_config_dir, *domain,
                                                         *checked);
  if (!where.ok()) {
    return Fail(
        Status(where.status().code(), "the login worked but the credentials could not be stored: " +
                                          where.status().message()));
  }
  if (where->rfind("docker-credential-", 0) != 0) {
    std::cerr << "WARNING! Your password will be stored unencrypted in " << *where << ".\n"
              << "Configure a credential helper (credsStore or credHelpers in that file) to "
                 "remove this warning.\n";
  }
  std::cout << "Login Succeeded" << std::endl;
  return 0;
}

int RunLogout(const LoginOptions& options) {
  Result<std::string> domain = registry::RegistryFromArgument(options.registry);
  if (!domain.ok()) return Fail(domain.status());
  const registry::ClientOptions client = DefaultClientOptions(options.common);
  const std::string key = registry::CredentialServerKey(*domain);
  Result<bool> removed = registry::EraseCredentials(client.docker_config_dir, *domain);
  if (!removed.ok()) return Fail(removed.status());
  if (*removed) {
    std::cout << "Removing login credentials for " << key << std::endl;
  } else {
    std::cout << "Not logged in to " << key << std::endl;
  }
  return 0;
}

}  // namespace imgfs::cli
