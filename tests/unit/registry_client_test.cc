// Client behaviour against a scripted registry (a fake HttpTransport). The real registry is
// exercised by the integration tests.
#include "registry/client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/digest.h"
#include "registry/auth.h"
#include "registry/manifest.h"
#include "registry/resolve.h"
#include "tests/support/files.h"

namespace imgfs::registry {
namespace {

struct Seen {
  std::string method;
  std::string url;
  std::vector<std::string> headers;
  std::string body = {};
  bool verify_tls = true;

  std::string Header(std::string_view name) const {
    std::string prefix = std::string(name) + ": ";
    for (const std::string& h : headers) {
      if (h.rfind(prefix, 0) == 0) return h.substr(prefix.size());
    }
    return "";
  }
};

// What the scripted server answers; `fail_after` >= 0 drops the connection after that many
// body bytes (a reset mid-transfer).
struct Answer {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  long fail_after = -1;
  bool unreachable = false;
};

class FakeTransport : public HttpTransport {
 public:
  using Handler = std::function<Answer(const Seen&)>;
  explicit FakeTransport(Handler handler) : handler_(std::move(handler)) {}

  Status Perform(const HttpRequest& request, HttpResponse* response) override {
    Seen seen{request.method, request.url, request.headers, request.body, request.verify_tls};
    {
      std::lock_guard<std::mutex> lock(mu_);
      seen_.push_back(seen);
    }
    Answer a = handler_(seen);
    *response = HttpResponse();
    if (a.unreachable) return Status::Unavailable("Failed to connect: Connection refused");
    response->status = a.status;
    response->headers = a.headers;
    std::string body = request.method == "HEAD" ? "" : a.body;
    size_t limit = a.fail_after >= 0 ? std::min<size_t>(body.size(), a.fail_after) : body.size();
    bool to_sink = request.sink && a.status >= 200 && a.status < 300;
    // Small chunks, as a network delivers them.
    for (size_t i = 0; i < limit; i += 7) {
      std::string_view chunk = std::string_view(body).substr(i, std::min<size_t>(7, limit - i));
      if (to_sink) {
        if (!request.sink(chunk)) {
          response->stopped_by_sink = true;
          return Status::Ok();
        }
      } else if (response->body.size() + chunk.size() > request.max_body) {
        // As the curl transport: a buffered body stops at max_body.
        response->body.append(chunk.substr(0, request.max_body - response->body.size()));
        response->truncated = true;
        return Status::Ok();
      } else {
        response->body.append(chunk);
      }
    }
    if (limit < body.size()) return Status::Unavailable("Connection reset by peer");
    return Status::Ok();
  }

  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  Handler handler_;
  std::mutex mu_;
  std::vector<Seen> seen_;
};

std::string ErrorBody(const std::string& code, const std::string& message) {
  return R"({"errors":[{"code":")" + code + R"(","message":")" + message + R"(","detail":null}]})";
}

Answer NotFound(const std::string& code) {
  return Answer{404, {}, ErrorBody(code, "unknown"), -1, false};
}

class ClientTest : public ::testing::Test {
 protected:
  // A client for https://registry.example.com whose network is `handler`.
  Client& Make(FakeTransport::Handler handler, ClientOptions options = {}) {
    auto transport = std::make_unique<FakeTransport>(std::move(handler));
    transport_ = transport.get();
    options.docker_config_dir = config_dir_;
    options.retry_base_delay_ms = 1;
    client_ = std::make_unique<Client>(options, std::move(transport));
    return *client_;
  }

  void WriteCredentials(const std::string& host, const std::string& user, const std::string& pass) {
    std::ofstream(config_dir_ + "/config.json") << R"({"auths":{")" << host << R"(":{"auth":")"
                                                << EncodeBase64(user + ":" + pass) << R"("}}})";
  }

  Reference Ref(const std::string& s) { return *Reference::Parse(s); }

  test::TempDir tmp_{"client"};
  const std::string config_dir_ = tmp_.path();
  FakeTransport* transport_ = nullptr;
  std::unique_ptr<Client> client_;
};

const std::string kManifest =
    R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:)" +
    std::string(64, 'c') + R"(","size":2},"layers":[]})";

TEST_F(ClientTest, FetchesManifestWithBearerTokenAndReusesIt) {
  int token_requests = 0;
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url.rfind("https://auth.example.com/token?", 0) == 0) {
      ++token_requests;
      EXPECT_EQ(r.url,
                "https://auth.example.com/"
                "token?service=registry.example.com&scope=repository%3Ateam%2Fapp%3Apull");
      EXPECT_EQ(r.Header("Authorization"), "");  // no credentials configured
      return Answer{200, {}, R"({"token":"T1","expires_in":300})"};
    }
    EXPECT_EQ(r.url, "https://registry.example.com/v2/team/app/manifests/v1");
    EXPECT_NE(r.Header("Accept").find("application/vnd.oci.image.index.v1+json"),
              std::string::npos);
    if (r.Header("Authorization") != "Bearer T1") {
      return Answer{
          401,
          {{"www-authenticate",
            R"(Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull")"}},
          ErrorBody("UNAUTHORIZED", "authentication required")};
    }
    return Answer{200, {{"content-type", "application/vnd.oci.image.manifest.v1+json"}}, kManifest};
  });
  Reference ref = Ref("registry.example.com/team/app:v1");
  Result<ManifestResponse> m = client.GetManifest(ref, "v1");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->bytes, kManifest);
  EXPECT_EQ(m->digest, Sha256Digest(kManifest));
  EXPECT_EQ(m->media_type, kOciManifest);
  // The token is cached: the next request authenticates up front.
  ASSERT_TRUE(client.GetManifest(ref, "v1").ok());
  EXPECT_EQ(token_requests, 1);
  EXPECT_EQ(transport_->seen().size(), 4u);  // 401, token, 200, 200
}

TEST_F(ClientTest, ManifestByDigestMustHashToIt) {
  Client& client = Make([&](const Seen&) { return Answer{200, {}, kManifest}; });
  Reference ref = Ref("registry.example.com/team/app");
  std::string wrong = "sha256:" + std::string(64, '0');
  Result<ManifestResponse> m = client.GetManifest(ref, wrong);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kDigestMismatch);
  EXPECT_TRUE(client.GetManifest(ref, Sha256Digest(kManifest)).ok());
}

TEST_F(ClientTest, ManifestByTagIsCheckedAgainstDockerContentDigest) {
  std::string sent = "sha256:" + std::string(64, '1');
  Client& client = Make([&](const Seen&) {
    return Answer{200, {{"docker-content-digest", sent}}, kManifest};
  });
  Result<ManifestResponse> m = client.GetManifest(Ref("registry.example.com/a"), "latest");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kDigestMismatch);
  sent = Sha256Digest(kManifest);
  EXPECT_TRUE(client.GetManifest(Ref("registry.example.com/a"), "latest").ok());
}

TEST_F(ClientTest, MapsRegistryErrorsToActionableStatuses) {
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url.find("/norepo/") != std::string::npos) return NotFound("NAME_UNKNOWN");
    if (r.url.find("/blobs/") != std::string::npos) return NotFound("BLOB_UNKNOWN");
    if (r.url.find("/forbidden/") != std::string::npos)
      return Answer{403, {}, ErrorBody("DENIED", "no way")};
    return NotFound("MANIFEST_UNKNOWN");
  });
  Result<ManifestResponse> m = client.GetManifest(Ref("registry.example.com/app:nope"), "nope");
  EXPECT_EQ(m.status().code(), Code::kNotFound);
  EXPECT_THAT(m.status().message(),
              ::testing::StartsWith("manifest unknown: registry.example.com/app:nope"));
  m = client.GetManifest(Ref("registry.example.com/norepo"), "latest");
  EXPECT_EQ(m.status().code(), Code::kNotFound);
  EXPECT_THAT(m.status().message(),
              ::testing::StartsWith("repository not found: registry.example.com/norepo"));
  m = client.GetManifest(Ref("registry.example.com/forbidden"), "latest");
  EXPECT_EQ(m.status().code(), Code::kUnauthorized);
  EXPECT_NE(m.status().message().find("no way"), std::string::npos);
  std::string out;
  Status b = client.GetBlobRange(Ref("registry.example.com/app"), "sha256:" + std::string(64, 'b'),
                                 0, 10, &out);
  EXPECT_EQ(b.code(), Code::kNotFound);
  EXPECT_NE(b.message().find("blob unknown"), std::string::npos);
  EXPECT_EQ(client.GetManifest(Ref("registry.example.com/app"), "bad/tag").status().code(),
            Code::kInvalidArgument);
}

TEST_F(ClientTest, BasicAuthWithConfiguredCredentials) {
  WriteCredentials("registry.example.com", "alice", "s3cret");
  std::string expected = "Basic " + EncodeBase64("alice:s3cret");
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.Header("Authorization") != expected) {
      return Answer{401, {{"www-authenticate", R"(Basic realm="Registry Realm")"}}, ""};
    }
    return Answer{200, {}, kManifest};
  });
  Result<ManifestResponse> m = client.GetManifest(Ref("registry.example.com/app"), "latest");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_TRUE(client.GetManifest(Ref("registry.example.com/app"), "latest").ok());
  EXPECT_EQ(transport_->seen().size(), 3u);  // challenge once, then credentials up front
}

TEST_F(ClientTest, RefusedCredentialsAreReportedAsSuch) {
  WriteCredentials("registry.example.com", "alice", "wrong");
  Client& client = Make([&](const Seen&) {
    return Answer{401, {{"www-authenticate", R"(Basic realm="Registry Realm")"}}, ""};
  });
  Result<ManifestResponse> m = client.GetManifest(Ref("registry.example.com/app"), "latest");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kUnauthorized);
  EXPECT_EQ(m.status().message().rfind(
                "registry.example.com refused the credentials for registry.example.com/app", 0),
            0u)
      << m.status().message();
}

TEST_F(ClientTest, MissingCredentialsSayHowToLogIn) {
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url.rfind("https://auth.example.com/", 0) == 0) return Answer{401, {}, ""};
    return Answer{
        401,
        {{"www-authenticate", R"(Bearer realm="https://auth.example.com/token",service="svc")"}},
        ""};
  });
  Result<ManifestResponse> m = client.GetManifest(Ref("registry.example.com/app"), "latest");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kUnauthorized);
  EXPECT_NE(m.status().message().find("authentication required for registry.example.com/app"),
            std::string::npos);
  EXPECT_NE(m.status().message().find("imgfs login registry.example.com"), std::string::npos);
}

TEST_F(ClientTest, TokenServerGetsBasicCredentialsAndAcceptsAccessToken) {
  WriteCredentials("registry.example.com", "bob", "pw");
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url.rfind("https://auth.example.com/", 0) == 0) {
      if (r.Header("Authorization") != "Basic " + EncodeBase64("bob:pw"))
        return Answer{401, {}, ""};
      return Answer{200, {}, R"({"access_token":"AT"})"};
    }
    if (r.Header("Authorization") == "Bearer AT") return Answer{200, {}, kManifest};
    return Answer{
        401,
        {{"www-authenticate", R"(Bearer realm="https://auth.example.com/token",service="svc")"}},
        ""};
  });
  Result<ManifestResponse> m = client.GetManifest(Ref("registry.example.com/app"), "latest");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
}

TEST_F(ClientTest, IdentityTokenIsUsedWithTheRefreshTokenGrant) {
  std::ofstream(config_dir_ + "/config.json")
      << R"({"auths":{"registry.example.com":{"auth":")" << EncodeBase64("carol:")
      << R"(","identitytoken":"refresh-123"}}})";
  int grants = 0;
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url == "https://auth.example.com/token") {
      ++grants;
      EXPECT_EQ(r.method, "POST");
      EXPECT_EQ(r.Header("Authorization"), "");
      EXPECT_EQ(r.Header("Content-Type"), "application/x-www-form-urlencoded");
      EXPECT_EQ(r.body,
                "grant_type=refresh_token&refresh_token=refresh-123&client_id=imgfs"
                "&service=svc&scope=repository%3Ateam%2Fapp%3Apull");
      return Answer{200, {}, R"({"access_token":"AT","expires_in":300})"};
    }
    if (r.Header("Authorization") == "Bearer AT") return Answer{200, {}, kManifest};
    return Answer{
        401,
        {{"www-authenticate", R"(Bearer realm="https://auth.example.com/token",service="svc")"}},
        ""};
  });
  Result<ManifestResponse> m = client.GetManifest(Ref("registry.example.com/team/app"), "latest");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(grants, 1);
}

TEST_F(ClientTest, RefusedIdentityTokenSaysToLogInAgain) {
  std::ofstream(config_dir_ + "/config.json")
      << R"({"auths":{"registry.example.com":{"identitytoken":"expired"}}})";
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url == "https://auth.example.com/token") {
      return Answer{400, {}, R"({"error":"invalid_grant"})"};
    }
    return Answer{
        401, {{"www-authenticate", R"(Bearer realm="https://auth.example.com/token")"}}, ""};
  });
  Result<ManifestResponse> m = client.GetManifest(Ref("registry.example.com/team/app"), "latest");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kUnauthorized);
  EXPECT_NE(m.status().message().find("an identity token"), std::string::npos)
      << m.status().message();
  EXPECT_NE(m.status().message().find("imgfs login registry.example.com"), std::string::npos)
      << m.status().message();
}

TEST_F(ClientTest, InsecureRegistryIsTriedUnverifiedThenOverPlainHttp) {
  ClientOptions options;
  options.insecure_registries = {"registry.example.com:5000"};
  Client& client = Make(
      [&](const Seen& r) -> Answer {
        if (r.url.rfind("https://registry.example.com:5000/", 0) == 0) {
          EXPECT_FALSE(r.verify_tls) << r.url;
          return Answer{0, {}, "", -1, /*unreachable=*/true};
        }
        return Answer{200, {}, kManifest};
      },
      options);
  ASSERT_TRUE(client.GetManifest(Ref("registry.example.com:5000/app"), "latest").ok());
  ASSERT_TRUE(client.GetManifest(Ref("registry.example.com:5000/app"), "v2").ok());
  std::vector<Seen> seen = transport_->seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].url, "https://registry.example.com:5000/v2/app/manifests/latest");
  EXPECT_EQ(seen[1].url, "http://registry.example.com:5000/v2/app/manifests/latest");
  // The endpoint that answered is asked first from then on.
  EXPECT_EQ(seen[2].url, "http://registry.example.com:5000/v2/app/manifests/v2");
  // Other registries keep their certificates checked.
  ASSERT_TRUE(client.GetManifest(Ref("registry.example.com/app"), "latest").ok());
  EXPECT_TRUE(transport_->seen().back().verify_tls);
  EXPECT_EQ(transport_->seen().back().url, "https://registry.example.com/v2/app/manifests/latest");
}

TEST_F(ClientTest, RedirectsNeverCarryTheRegistryAuthorization) {
  const std::string blob = "0123456789abcdefghijklmnopqrstuvwxyz";
  const std::string digest = Sha256Digest(blob);
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url.rfind("https://auth.example.com/", 0) == 0)
      return Answer{200, {}, R"({"token":"T"})"};
    if (r.url.rfind("https://cdn.example.net/", 0) == 0) {
      EXPECT_EQ(r.Header("Authorization"), "") << r.url;
      return Answer{200, {}, blob};
    }
    if (r.Header("Authorization") != "Bearer T") {
      return Answer{
          401, {{"www-authenticate", R"(Bearer realm="https://auth.example.com/token")"}}, ""};
    }
    if (r.url.find("/blobs/") != std::string::npos) {
      // First a relative hop on the registry, then off to the CDN.
      if (r.url.find("?hop=1") == std::string::npos)
        return Answer{307, {{"location", "/v2/app/blobs/" + digest + "?hop=1"}}, ""};
      return Answer{307, {{"location", "https://cdn.example.net/x/y?sig=abc"}}, ""};
    }
    return Answer{404, {}, ""};
  });
  Result<std::string> got = client.GetBlobVerified(Ref("registry.example.com/app"), digest);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, blob);
  bool saw_hop = false;
  for (const Seen& s : transport_->seen()) {
    if (s.url.find("?hop=1") != std::string::npos) {
      saw_hop = true;
      EXPECT_EQ(s.url, "https://registry.example.com/v2/app/blobs/" + digest + "?hop=1");
      EXPECT_EQ(s.Header("Authorization"), "Bearer T");
    }
  }
  EXPECT_TRUE(saw_hop);
}

TEST_F(ClientTest, TooManyRedirectsIsAnError) {
  Client& client = Make([&](const Seen& r) {
    return Answer{302, {{"location", r.url + "x"}}, ""};
  });
  std::string out;
  Status st = client.GetBlobRange(Ref("registry.example.com/app"), "sha256:" + std::string(64, 'a'),
                                  0, 1, &out);
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_NE(st.message().find("redirects"), std::string::npos);
  EXPECT_EQ(transport_->seen().size(), 6u);
}

// A blob server that honours Range the way `honour` says.
FakeTransport::Handler BlobServer(const std::string& blob, bool honour,
                                  std::string bad_range = "") {
  return [=](const Seen& r) -> Answer {
    std::string range = r.Header("Range");
    if (!honour || range.empty()) return Answer{200, {}, blob};
    uint64_t first = std::stoull(range.substr(6));
    size_t dash = range.find('-');
    uint64_t last = dash + 1 < range.size() ? std::stoull(range.substr(dash + 1)) : blob.size() - 1;
    last = std::min<uint64_t>(last, blob.size() - 1);
    std::string content_range = bad_range.empty()
                                    ? "bytes " + std::to_string(first) + "-" +
                                          std::to_string(last) + "/" + std::to_string(blob.size())
                                    : bad_range;
    return Answer{206, {{"content-range", content_range}}, blob.substr(first, last - first + 1)};
  };
}

TEST_F(ClientTest, RangeReadsUsePartialContent) {
  std::string blob;
  for (int i = 0; i < 1000; ++i) blob += static_cast<char>('a' + i % 26);
  Client& client = Make(BlobServer(blob, true));
  std::string out = "prefix:";
  Status st = client.GetBlobRange(Ref("registry.example.com/app"), Sha256Digest(blob), 100, 250,
                                  &out);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(out, "prefix:" + blob.substr(100, 250));
  EXPECT_EQ(transport_->seen().back().Header("Range"), "bytes=100-349");
  // A zero-length read needs no request.
  size_t before = transport_->seen().size();
  EXPECT_TRUE(
      client.GetBlobRange(Ref("registry.example.com/app"), Sha256Digest(blob), 5, 0, &out).ok());
  EXPECT_EQ(transport_->seen().size(), before);
}

TEST_F(ClientTest, RangeReadsSurviveServersThatIgnoreRange) {
  std::string blob;
  for (int i = 0; i < 1000; ++i) blob += static_cast<char>('A' + i % 23);
  Client& client = Make(BlobServer(blob, false));
  std::string out;
  Status st = client.GetBlobRange(Ref("registry.example.com/app"), Sha256Digest(blob), 333, 100,
                                  &out);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(out, blob.substr(333, 100));
  // Past the end of the blob is not silently short.
  out.clear();
  st = client.GetBlobRange(Ref("registry.example.com/app"), Sha256Digest(blob), 990, 100, &out);
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_TRUE(out.empty());
}

TEST_F(ClientTest, WrongContentRangeIsCorrupt) {
  std::string blob(500, 'x');
  Client& client = Make(BlobServer(blob, true, "bytes 0-99/500"));
  std::string out;
  Status st = client.GetBlobRange(Ref("registry.example.com/app"), Sha256Digest(blob), 100, 100,
                                  &out);
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_NE(st.message().find("Content-Range"), std::string::npos);
  EXPECT_TRUE(out.empty());
}

TEST_F(ClientTest, BrokenStreamsResumeFromWhereTheyStopped) {
  std::string blob;
  for (int i = 0; i < 5000; ++i) blob += static_cast<char>(i * 7 % 251);
  int calls = 0;
  FakeTransport::Handler ranged = BlobServer(blob, true);
  Client& client = Make([&](const Seen& r) {
    Answer a = ranged(r);
    if (++calls <= 3) a.fail_after = 1000;  // three resets, each after some progress
    return a;
  });
  std::string got;
  Status st = client.GetBlob(Ref("registry.example.com/app"), Sha256Digest(blob),
                             [&](std::string_view c) {
                               got.append(c);
                               return Status::Ok();
                             });
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(got, blob);
  auto seen = transport_->seen();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].Header("Range"), "");
  EXPECT_EQ(seen[1].Header("Range"), "bytes=1000-");
  EXPECT_EQ(seen[2].Header("Range"), "bytes=2000-");
}

// A registry that breaks every connection after a few bytes (or stalls there, which the curl
// transport reports the same way) costs a bounded number of attempts, not one per byte.
TEST_F(ClientTest, BlobTransferGivesUpAfterMaxTransferFailures) {
  std::string blob(100000, 'b');
  FakeTransport::Handler ranged = BlobServer(blob, true);
  Client& client = Make([&](const Seen& r) {
    Answer a = ranged(r);
    a.fail_after = 500;
    return a;
  });
  uint64_t got = 0;
  Status st = client.GetBlob(Ref("registry.example.com/app"), Sha256Digest(blob),
                             [&](std::string_view c) {
                               got += c.size();
                               return Status::Ok();
                             });
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_THAT(st.message(), ::testing::HasSubstr("after 5 failed attempts"));
  EXPECT_EQ(transport_->seen().size(), 5u);
  EXPECT_EQ(got, 2500u);

  // Unit fetches (ranges) are bounded the same way, and failures without progress too.
  Client& silent = Make([&](const Seen&) { return Answer{0, {}, "", -1, true}; });
  std::string out;
  st = silent.GetBlobRange(Ref("registry.example.com/app"), Sha256Digest(blob), 0, 100, &out);
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_LE(transport_->seen().size(), 5u);
}

TEST_F(ClientTest, CancelStopsTransfersAndRetries) {
  std::string blob(10000, 'c');
  std::atomic<bool> cancel{false};
  ClientOptions options;
  options.cancel = &cancel;
  options.max_attempts = 1000;
  options.max_transfer_failures = 1000;
  int calls = 0;
  Client& client = Make(
      [&](const Seen&) {
        if (++calls == 3) cancel = true;
        return Answer{503, {}, ""};
      },
      options);
  Status st = client.GetBlob(Ref("registry.example.com/app"), Sha256Digest(blob),
                             [](std::string_view) { return Status::Ok(); });
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_EQ(calls, 3);
  // Nothing new starts once cancelled.
  st = client.GetBlob(Ref("registry.example.com/app"), Sha256Digest(blob),
                      [](std::string_view) { return Status::Ok(); });
  EXPECT_THAT(st.message(), ::testing::HasSubstr("cancelled"));
  EXPECT_EQ(calls, 3);
}

TEST_F(ClientTest, ResumeAgainstServerIgnoringRangeSkipsWhatWasDelivered) {
  std::string blob;
  for (int i = 0; i < 3000; ++i) blob += static_cast<char>('0' + i % 10);
  int calls = 0;
  Client& client = Make([&](const Seen&) {
    Answer a{200, {}, blob};
    if (++calls == 1) a.fail_after = 1234;
    return a;
  });
  std::string got;
  Status st = client.GetBlob(Ref("registry.example.com/app"), Sha256Digest(blob),
                             [&](std::string_view c) {
                               got.append(c);
                               return Status::Ok();
                             });
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(got, blob);
}

TEST_F(ClientTest, SinkErrorsStopTheStream) {
  std::string blob(10000, 'q');
  Client& client = Make(BlobServer(blob, true));
  size_t got = 0;
  Status st = client.GetBlob(Ref("registry.example.com/app"), Sha256Digest(blob),
                             [&](std::string_view c) {
                               got += c.size();
                               return got > 100 ? Status::IoError("disk full") : Status::Ok();
                             });
  EXPECT_EQ(st.code(), Code::kIoError);
  EXPECT_LT(got, 200u);
}

TEST_F(ClientTest, RetriesServerErrorsThenGivesUp) {
  int calls = 0;
  Client& client = Make([&](const Seen&) {
    ++calls;
    return calls < 3 ? Answer{503, {}, ""} : Answer{200, {}, kManifest};
  });
  ASSERT_TRUE(client.GetManifest(Ref("registry.example.com/app"), "latest").ok());
  EXPECT_EQ(calls, 3);

  calls = 0;
  Client& failing = Make([&](const Seen&) {
    ++calls;
    return Answer{429, {}, ErrorBody("TOOMANYREQUESTS", "You have reached your pull rate limit")};
  });
  Result<ManifestResponse> m = failing.GetManifest(Ref("registry.example.com/app"), "latest");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kUnavailable);
  EXPECT_NE(m.status().message().find("pull rate limit"), std::string::npos);
  EXPECT_EQ(calls, 3);
}

TEST_F(ClientTest, UnreachableRegistryNamesTheHost) {
  int calls = 0;
  Client& client = Make([&](const Seen&) {
    ++calls;
    Answer a;
    a.unreachable = true;
    return a;
  });
  Result<ManifestResponse> m = client.GetManifest(Ref("registry.example.com/app"), "latest");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kUnavailable);
  EXPECT_EQ(m.status().message(),
            "registry registry.example.com unreachable: Failed to connect: Connection refused");
  EXPECT_EQ(calls, 3);
}

TEST_F(ClientTest, LoopbackRegistriesUsePlainHttpAndDockerHubItsApiHost) {
  Client& client = Make([&](const Seen&) { return Answer{200, {}, kManifest}; });
  ASSERT_TRUE(client.GetManifest(Ref("127.0.0.1:5000/app"), "latest").ok());
  EXPECT_EQ(transport_->seen().back().url, "http://127.0.0.1:5000/v2/app/manifests/latest");
  ASSERT_TRUE(client.GetManifest(Ref("alpine"), "latest").ok());
  EXPECT_EQ(transport_->seen().back().url,
            "https://registry-1.docker.io/v2/library/alpine/manifests/latest");
}

TEST_F(ClientTest, HeadManifestReturnsTheDigestHeader) {
  std::string digest = Sha256Digest(kManifest);
  bool send_header = true;
  Client& client = Make([&](const Seen&) {
    Answer a{200, {}, kManifest};
    if (send_header) a.headers.push_back({"docker-content-digest", digest});
    return a;
  });
  Result<std::string> d = client.HeadManifest(Ref("registry.example.com/app"), "latest");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(*d, digest);
  EXPECT_EQ(transport_->seen().back().method, "HEAD");
  send_header = false;  // falls back to GET and hashing
  d = client.HeadManifest(Ref("registry.example.com/app"), "latest");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(*d, digest);
  EXPECT_EQ(transport_->seen().back().method, "GET");
}

TEST_F(ClientTest, GetBlobVerifiedChecksDigestAndSize) {
  std::string blob = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";
  Client& client = Make(BlobServer(blob, true));
  Reference ref = Ref("registry.example.com/app");
  EXPECT_EQ(client.GetBlobVerified(ref, "sha256:" + std::string(64, 'd')).status().code(),
            Code::kDigestMismatch);
  EXPECT_EQ(client.GetBlobVerified(ref, Sha256Digest(blob), 10).status().code(), Code::kCorrupt);
  Result<std::string> ok = client.GetBlobVerified(ref, Sha256Digest(blob));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, blob);
}

TEST_F(ClientTest, ResolvePicksThePlatformFromAnIndex) {
  const std::string config =
      R"({"architecture":"arm64","os":"linux","variant":"v8","rootfs":{"type":"layers","diff_ids":[]}})";
  const std::string manifest =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
      Sha256Digest(config) + R"(","size":)" + std::to_string(config.size()) + R"(},"layers":[]})";
  const std::string other = "sha256:" + std::string(64, '9');
  const std::string index =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
      other +
      R"(","size":10,"platform":{"os":"linux","architecture":"amd64"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
      Sha256Digest(manifest) + R"(","size":)" + std::to_string(manifest.size()) +
      R"(,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]})";
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url.ends_with("/manifests/v1"))
      return Answer{200, {{"content-type", std::string(kOciIndex)}}, index};
    if (r.url.ends_with("/manifests/" + Sha256Digest(manifest))) {
      return Answer{200, {{"content-type", std::string(kOciManifest)}}, manifest};
    }
    if (r.url.ends_with("/manifests/" + Sha256Digest(index))) {
      return Answer{200, {{"content-type", std::string(kOciIndex)}}, index};
    }
    if (r.url.ends_with("/blobs/" + Sha256Digest(config))) return Answer{200, {}, config};
    return NotFound("MANIFEST_UNKNOWN");
  });
  Result<ResolvedImage> img = Resolve(client, Ref("registry.example.com/app:v1"),
                                      *Platform::Parse("linux/arm64"));
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  ASSERT_TRUE(img->index.has_value());
  EXPECT_EQ(img->index->digest, Sha256Digest(index));
  EXPECT_EQ(img->manifest.digest, Sha256Digest(manifest));
  EXPECT_EQ(img->platform.String(), "linux/arm64/v8");
  EXPECT_EQ(img->parsed.config.digest, Sha256Digest(config));

  Result<ResolvedImage> missing = Resolve(client, Ref("registry.example.com/app:v1"),
                                          *Platform::Parse("linux/s390x"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(),
            "no image for platform linux/s390x in registry.example.com/app:v1; available: "
            "linux/amd64, linux/arm64/v8");

  // A digest reference pins: the tag is not asked for.
  size_t before = transport_->seen().size();
  Result<ResolvedImage> pinned = Resolve(
      client, Ref("registry.example.com/app:ignored@" + Sha256Digest(manifest)),
      *Platform::Parse("linux/amd64"));
  ASSERT_TRUE(pinned.ok()) << pinned.status().ToString();
  EXPECT_FALSE(pinned->index.has_value());
  EXPECT_EQ(pinned->platform.String(), "linux/arm64/v8");  // from the config, not the request
  for (size_t i = before; i < transport_->seen().size(); ++i) {
    EXPECT_EQ(transport_->seen()[i].url.find("ignored"), std::string::npos);
  }
}

// ---- lying registries: each a clear error, bounded, nothing looping ----

// A one-layer image whose config is `config`; the registry serves it under tag v1.
FakeTransport::Handler OneLayerImage(const std::string& config, std::string* manifest_out) {
  const std::string layer = "sha256:" + std::string(64, '1');
  std::string manifest =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
      Sha256Digest(config) + R"(","size":)" + std::to_string(config.size()) +
      R"(},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" +
      layer + R"(","size":100}]})";
  *manifest_out = manifest;
  return [=](const Seen& r) -> Answer {
    if (r.url.ends_with("/manifests/v1")) {
      return Answer{200, {{"content-type", std::string(kOciManifest)}}, manifest};
    }
    if (r.url.ends_with("/blobs/" + Sha256Digest(config))) return Answer{200, {}, config};
    return NotFound("BLOB_UNKNOWN");
  };
}

TEST_F(ClientTest, ResolveRefusesConfigsWithoutMatchingDiffIds) {
  const std::string id = "sha256:" + std::string(64, '2');
  struct Case {
    std::string config;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"this is not JSON", "not a JSON object"},
      {R"(["a","list"])", "not a JSON object"},
      {R"({"architecture":"amd64","os":"linux"})", "no rootfs"},
      {R"({"rootfs":{"type":"layers"}})", "no rootfs.diff_ids"},
      {R"({"rootfs":{"type":"layers","diff_ids":[]}})",
       "lists 0 diff_ids for the manifest's 1 layers"},
      {R"({"rootfs":{"type":"layers","diff_ids":[")" + id + R"(",")" + id + R"("]}})",
       "lists 2 diff_ids"},
      {R"({"rootfs":{"type":"layers","diff_ids":["sha256:nothex"]}})", "diff_ids[0]"},
      {R"({"rootfs":{"type":"layers","diff_ids":[7]}})", "diff_ids[0] is not a string"},
  };
  for (const Case& c : cases) {
    std::string manifest;
    Client& client = Make(OneLayerImage(c.config, &manifest));
    Result<ResolvedImage> img = Resolve(client, Ref("registry.example.com/app:v1"),
                                        *Platform::Parse("linux/amd64"));
    ASSERT_FALSE(img.ok()) << c.config;
    EXPECT_EQ(img.status().code(), Code::kCorrupt) << c.config;
    EXPECT_THAT(img.status().message(), ::testing::HasSubstr(c.error)) << c.config;
    EXPECT_THAT(img.status().message(), ::testing::HasSubstr(Sha256Digest(c.config)));
  }
  std::string manifest;
  Client& client = Make(OneLayerImage(R"({"rootfs":{"type":"layers","diff_ids":[")" + id +
                                          R"("]},"architecture":"amd64","os":"linux"})",
                                      &manifest));
  Result<ResolvedImage> img = Resolve(client, Ref("registry.example.com/app:v1"),
                                      *Platform::Parse("linux/amd64"));
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->diff_ids, std::vector<std::string>{id});
}

TEST_F(ClientTest, ResolveNeverFollowsAnIndexIntoAnIndex) {
  // An index whose entry is another index (or, from a lying registry, itself again): one
  // level is read, then a clear error; no request loop.
  const std::string inner =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]})";
  auto index_naming = [](const std::string& target, size_t size) {
    return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":")" +
           target + R"(","size":)" + std::to_string(size) +
           R"(,"platform":{"os":"linux","architecture":"amd64"}}]})";
  };
  const std::string outer = index_naming(Sha256Digest(inner), inner.size());
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url.ends_with("/manifests/v1"))
      return Answer{200, {{"content-type", std::string(kOciIndex)}}, outer};
    return Answer{200, {{"content-type", std::string(kOciIndex)}}, inner};
  });
  Result<ResolvedImage> img = Resolve(client, Ref("registry.example.com/app:v1"),
                                      *Platform::Parse("linux/amd64"));
  EXPECT_EQ(img.status().code(), Code::kUnsupported) << img.status().ToString();
  EXPECT_THAT(img.status().message(), ::testing::HasSubstr("nested indexes"));
  EXPECT_EQ(transport_->seen().size(), 2u);

  // A registry that answers the entry's digest with the outer index itself.
  const std::string self = index_naming("sha256:" + std::string(64, '3'), 100);
  Client& liar = Make([&](const Seen&) -> Answer {
    return Answer{200, {{"content-type", std::string(kOciIndex)}}, self};
  });
  img = Resolve(liar, Ref("registry.example.com/app:v1"), *Platform::Parse("linux/amd64"));
  EXPECT_EQ(img.status().code(), Code::kDigestMismatch) << img.status().ToString();
  EXPECT_EQ(transport_->seen().size(), 2u);
}

TEST_F(ClientTest, HugeAndEndlessManifestsAreCutOff) {
  // The fake delivers the whole body; the client keeps at most kMaxManifestBytes of it.
  std::string huge = "{\"schemaVersion\":2,\"x\":\"" + std::string(kMaxManifestBytes, 'x') + "\"}";
  Client& client = Make([&](const Seen&) { return Answer{200, {}, huge}; });
  Result<ManifestResponse> m = client.GetManifest(Ref("registry.example.com/app"), "v1");
  EXPECT_EQ(m.status().code(), Code::kCorrupt);
  EXPECT_THAT(m.status().message(), ::testing::HasSubstr("larger than 4 MiB"));
}

TEST_F(ClientTest, OversizedConfigsAreRefusedBeforeTheyAreRead) {
  std::string manifest;
  std::string config(1000, ' ');
  FakeTransport::Handler image = OneLayerImage(config, &manifest);
  // The manifest claims a config of 1 GiB.
  std::string lying = manifest;
  lying.replace(lying.find(std::to_string(config.size())), std::to_string(config.size()).size(),
                std::to_string(1 << 30));
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url.ends_with("/manifests/v1"))
      return Answer{200, {{"content-type", std::string(kOciManifest)}}, lying};
    return image(r);
  });
  Result<ResolvedImage> img = Resolve(client, Ref("registry.example.com/app:v1"),
                                      *Platform::Parse("linux/amd64"));
  EXPECT_EQ(img.status().code(), Code::kCorrupt) << img.status().ToString();
  EXPECT_THAT(img.status().message(), ::testing::HasSubstr("an image config is at most"));
  for (const Seen& s : transport_->seen()) EXPECT_EQ(s.url.find("/blobs/"), std::string::npos);
}

TEST_F(ClientTest, DockerHubMirrorsAreTriedFirstAndFallenBackFrom) {
  WriteCredentials("https://index.docker.io/v1/", "hubuser", "hubpass");
  bool mirror_has_it = true;
  auto transport = std::make_unique<FakeTransport>([&](const Seen& r) -> Answer {
    if (r.url.rfind("https://down.example.com/", 0) == 0) {
      Answer a;
      a.unreachable = true;
      return a;
    }
    if (r.url.rfind("http://mirror.example.com:5000/", 0) == 0) {
      EXPECT_EQ(r.Header("Authorization"), "");  // Docker Hub credentials stay with Docker Hub
      if (r.url.find("/private/") != std::string::npos) {
        return Answer{401, {{"www-authenticate", R"(Basic realm="mirror")"}}, ""};
      }
      return mirror_has_it ? Answer{200, {}, kManifest} : NotFound("MANIFEST_UNKNOWN");
    }
    if (r.url.rfind("https://quay.io/", 0) == 0) return Answer{200, {}, kManifest};
    EXPECT_EQ(r.url.rfind("https://registry-1.docker.io/v2/", 0), 0u) << r.url;
    return Answer{200, {}, kManifest};
  });
  FakeTransport* fake = transport.get();
  ClientOptions options;
  options.docker_config_dir = config_dir_;
  options.retry_base_delay_ms = 1;
  options.mirrors["docker.io"] = {"https://down.example.com", "http://mirror.example.com:5000/"};
  Client client(options, std::move(transport));
  auto upstream_requests = [&] {
    int n = 0;
    for (const Seen& s : fake->seen()) n += s.url.find("registry-1.docker.io") != std::string::npos;
    return n;
  };

  ASSERT_TRUE(client.GetManifest(Ref("alpine"), "latest").ok());
  EXPECT_EQ(upstream_requests(), 0);
  EXPECT_EQ(fake->seen().back().url,
            "http://mirror.example.com:5000/v2/library/alpine/manifests/latest");

  mirror_has_it = false;
  ASSERT_TRUE(client.GetManifest(Ref("alpine"), "latest").ok());
  EXPECT_EQ(upstream_requests(), 1);
  ASSERT_TRUE(client.GetManifest(Ref("someone/private"), "latest").ok());
  EXPECT_EQ(upstream_requests(), 2);

  // Other registries never go through Docker Hub mirrors.
  ASSERT_TRUE(client.GetManifest(Ref("quay.io/a/b"), "latest").ok());
  EXPECT_EQ(fake->seen().back().url, "https://quay.io/v2/a/b/manifests/latest");
}

TEST_F(ClientTest, AMirrorThatFailedIsSkippedForAWhileAndTheRegistryServes) {
  int mirror_requests = 0;
  bool mirror_up = false;
  auto transport = std::make_unique<FakeTransport>([&](const Seen& r) -> Answer {
    if (r.url.rfind("http://127.0.0.1:5001/", 0) == 0) {
      ++mirror_requests;
      if (!mirror_up) return Answer{503, {}, ""};
      return Answer{200, {}, kManifest};
    }
    EXPECT_EQ(r.url.rfind("https://registry.example.com/v2/", 0), 0u) << r.url;
    return Answer{200, {}, kManifest};
  });
  FakeTransport* fake = transport.get();
  ClientOptions options;
  options.docker_config_dir = config_dir_;
  options.retry_base_delay_ms = 1;
  options.mirrors["registry.example.com"] = {"http://127.0.0.1:5001"};
  options.mirror_skip_s = 3600;
  Client client(options, std::move(transport));
  ASSERT_TRUE(client.GetManifest(Ref("registry.example.com/app"), "v1").ok());
  EXPECT_EQ(mirror_requests, 1);  // asked once, no retries at a mirror
  EXPECT_EQ(fake->seen().back().url, "https://registry.example.com/v2/app/manifests/v1");
  // Skipped from now on, even when it would answer.
  mirror_up = true;
  ASSERT_TRUE(client.GetManifest(Ref("registry.example.com/app"), "v1").ok());
  ASSERT_TRUE(client.GetManifest(Ref("registry.example.com/app"), "v2").ok());
  EXPECT_EQ(mirror_requests, 1);

  // With a short memory the mirror is asked again once it has passed.
  options.mirror_skip_s = 0;
  mirror_requests = 0;
  mirror_up = false;
  Client forgetful(options, std::make_unique<FakeTransport>([&](const Seen& r) -> Answer {
                     if (r.url.rfind("http://127.0.0.1:5001/", 0) == 0) {
                       ++mirror_requests;
                       if (!mirror_up) return Answer{0, {}, "", -1, /*unreachable=*/true};
                       return Answer{200, {}, kManifest};
                     }
                     return Answer{200, {}, kManifest};
                   }));
  ASSERT_TRUE(forgetful.GetManifest(Ref("registry.example.com/app"), "v1").ok());
  mirror_up = true;
  ASSERT_TRUE(forgetful.GetManifest(Ref("registry.example.com/app"), "v1").ok());
  EXPECT_EQ(mirror_requests, 2);
}

// A pull-through cache that does not hold a blob yet answers a Range request with 200 and
// the whole blob. A range near the start is taken from that answer (and the rest cut off);
// one further in is read from the registry, and so are the blob's next ranges while the
// mirror fills: the bytes are right either way, and the whole blob is not sent again.
TEST_F(ClientTest, AMirrorThatIgnoresRangeServesCorrectlyWithoutTheBlobTwice) {
  std::string blob;
  for (uint64_t i = 0; blob.size() < 3 * kMaxMirrorSkip; ++i)
    blob += std::to_string(i * 7919) + ",";
  const std::string digest = Sha256Digest(blob);
  std::mutex mu;
  uint64_t mirror_bytes = 0;
  uint64_t registry_bytes = 0;
  bool mirror_filled = false;
  auto serve = [&](const Seen& r, uint64_t* counter, bool ignore_range) -> Answer {
    std::string range = r.Header("Range");
    std::lock_guard<std::mutex> lock(mu);
    if (range.empty() || ignore_range) {
      *counter += blob.size();  // sent; the client may stop reading early
      return Answer{200, {}, blob};
    }
    uint64_t first = std::stoull(range.substr(6));
    uint64_t last = std::stoull(range.substr(range.find('-') + 1));
    *counter += last - first + 1;
    return Answer{206,
                  {{"content-range", "bytes " + std::to_string(first) + "-" + std::to_string(last) +
                                         "/" + std::to_string(blob.size())}},
                  blob.substr(first, last - first + 1)};
  };
  ClientOptions options;
  options.mirrors["registry.example.com"] = {"http://127.0.0.1:5001"};
  options.mirror_fill_ms = 3600 * 1000;
  Client& client = Make(
      [&](const Seen& r) -> Answer {
        if (r.url.rfind("http://127.0.0.1:5001/", 0) == 0) {
          return serve(r, &mirror_bytes, !mirror_filled);
        }
        return serve(r, &registry_bytes, false);
      },
      options);
  const Reference repo = Ref("registry.example.com/app");
  std::string out;
  // Near the start: from the mirror's whole answer.
  ASSERT_TRUE(client.GetBlobRange(repo, digest, 100, 1000, &out).ok());
  EXPECT_EQ(out, blob.substr(100, 1000));
  EXPECT_EQ(registry_bytes, 0u);
  // Further in, while the mirror fills: the registry, for exactly the range.
  out.clear();
  ASSERT_TRUE(client.GetBlobRange(repo, digest, 2 * kMaxMirrorSkip, 5000, &out).ok());
  EXPECT_EQ(out, blob.substr(2 * kMaxMirrorSkip, 5000));
  EXPECT_EQ(registry_bytes, 5000u);
  // The mirror was not asked again for that blob; the registry serves its ranges meanwhile.
  int mirror_asks = 0;
  for (const Seen& s : transport_->seen()) mirror_asks += s.url.find(":5001/") != std::string::npos;
  EXPECT_EQ(mirror_asks, 1);
  out.clear();
  ASSERT_TRUE(client.GetBlobRange(repo, digest, 10, 20, &out).ok());
  EXPECT_EQ(out, blob.substr(10, 20));
  EXPECT_EQ(registry_bytes, 5020u);

  // Far into the blob on a mirror not known to be filling: the whole answer is cut off at
  // once and the registry sends the range.
  ClientOptions fresh = options;
  Client& other = Make(
      [&](const Seen& r) -> Answer {
        if (r.url.rfind("http://127.0.0.1:5001/", 0) == 0) return serve(r, &mirror_bytes, true);
        return serve(r, &registry_bytes, false);
      },
      fresh);
  registry_bytes = 0;
  out.clear();
  ASSERT_TRUE(other.GetBlobRange(repo, digest, blob.size() - 300, 300, &out).ok());
  EXPECT_EQ(out, blob.substr(blob.size() - 300));
  EXPECT_EQ(registry_bytes, 300u);
}

TEST_F(ClientTest, ConcurrentReadsShareTheClient) {
  std::string blob;
  for (int i = 0; i < 20000; ++i) blob += static_cast<char>(i * 13 % 256);
  FakeTransport::Handler ranged = BlobServer(blob, true);
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url.rfind("https://auth.example.com/", 0) == 0)
      return Answer{200, {}, R"({"token":"T"})"};
    if (r.Header("Authorization") != "Bearer T") {
      return Answer{
          401, {{"www-authenticate", R"(Bearer realm="https://auth.example.com/token")"}}, ""};
    }
    return ranged(r);
  });
  Reference ref = Ref("registry.example.com/app");
  std::vector<std::thread> threads;
  std::vector<int> failures(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        uint64_t off = static_cast<uint64_t>((t * 997 + i * 131) % 19000);
        std::string out;
        Status st = client.GetBlobRange(ref, Sha256Digest(blob), off, 700, &out);
        if (!st.ok() || out != blob.substr(off, 700)) ++failures[t];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
}

TEST_F(ClientTest, CertificateProblemsAreNotRetriedAndSayWhereTheCaGoes) {
  int calls = 0;
  class TlsFailing : public HttpTransport {
   public:
    explicit TlsFailing(int* calls) : calls_(calls) {}
    Status Perform(const HttpRequest&, HttpResponse*) override {
      ++*calls_;
      return Status::Unavailable("SSL certificate problem: self-signed certificate");
    }
    int* calls_;
  };
  ClientOptions options;
  options.retry_base_delay_ms = 1;
  options.certs_dir = "/etc/docker/certs.d";
  Client client(options, std::make_unique<TlsFailing>(&calls));
  Result<ManifestResponse> m = client.GetManifest(Ref("registry.example.com:5443/app"), "latest");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kUnavailable);
  EXPECT_NE(m.status().message().find("/etc/docker/certs.d/registry.example.com:5443/ca.crt"),
            std::string::npos)
      << m.status().message();
  EXPECT_EQ(calls, 1);
}

// ---- tags list ----

TEST_F(ClientTest, ListTagsFollowsLinkHeadersAcrossPages) {
  Client& client = Make([&](const Seen& r) -> Answer {
    const std::string base = "https://registry.example.com/v2/team/app/tags/list";
    if (r.url == base) {
      return Answer{200,
                    {{"link", R"(</v2/team/app/tags/list?last=b&n=2>; rel="next")"}},
                    R"({"name":"team/app","tags":["a","b"]})"};
    }
    if (r.url == base + "?last=b&n=2") {
      // An absolute URL on the registry's own origin is as good as a path.
      return Answer{
          200,
          {{"link",
            R"(<https://registry.example.com/v2/team/app/tags/list?last=d&n=2>; rel="next")"}},
          R"({"name":"team/app","tags":["c","d"]})"};
    }
    if (r.url == base + "?last=d&n=2")
      return Answer{200, {}, R"({"name":"team/app","tags":["e"]})"};
    ADD_FAILURE() << "unexpected request " << r.url;
    return NotFound("NAME_UNKNOWN");
  });
  auto tags = client.ListTags(Ref("registry.example.com/team/app"));
  ASSERT_TRUE(tags.ok()) << tags.status().ToString();
  EXPECT_THAT(*tags, ::testing::ElementsAre("a", "b", "c", "d", "e"));
  EXPECT_EQ(transport_->seen().size(), 3u);
}

TEST_F(ClientTest, ListTagsOfAnEmptyOrUnknownRepository) {
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url.find("/v2/team/empty/") != std::string::npos) {
      return Answer{200, {}, R"({"name":"team/empty","tags":null})"};
    }
    return NotFound("NAME_UNKNOWN");
  });
  auto empty = client.ListTags(Ref("registry.example.com/team/empty"));
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->empty());
  auto unknown = client.ListTags(Ref("registry.example.com/team/nope"));
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(unknown.status().IsNotFound());
  EXPECT_THAT(unknown.status().message(), ::testing::HasSubstr("repository not found"));
}

TEST_F(ClientTest, ListTagsRefusesBadPagesAndForeignLinks) {
  std::string body;
  std::string link;
  Client& client = Make([&](const Seen&) -> Answer {
    Answer a{200, {}, body};
    if (!link.empty()) a.headers.push_back({"link", link});
    return a;
  });
  Reference ref = Ref("registry.example.com/team/app");
  body = R"({"name":"team/app","tags":"latest"})";
  EXPECT_EQ(client.ListTags(ref).status().code(), Code::kCorrupt);
  body = "not json";
  EXPECT_EQ(client.ListTags(ref).status().code(), Code::kCorrupt);
  body = R"({"name":"team/app","tags":["a"]})";
  link = R"(<https://evil.example.com/v2/team/app/tags/list?last=a>; rel="next")";
  Status foreign = client.ListTags(ref).status();
  EXPECT_EQ(foreign.code(), Code::kCorrupt);
  EXPECT_THAT(foreign.message(), ::testing::HasSubstr("another host"));
  // A registry whose next page is itself forever is cut off, not followed to the end of time.
  link = R"(</v2/team/app/tags/list?last=a>; rel="next")";
  Status endless = client.ListTags(ref).status();
  EXPECT_EQ(endless.code(), Code::kCorrupt) << endless.ToString();
}

TEST(RetryDelayTest, ExponentialWithEqualJitterAndRetryAfter) {
  EXPECT_EQ(RetryDelayMs(1, 250, 0, 0.0), 125);
  EXPECT_EQ(RetryDelayMs(1, 250, 0, 0.5), 187);
  EXPECT_EQ(RetryDelayMs(3, 250, 0, 0.0), 500);  // 1000 ms, its upper half
  EXPECT_EQ(RetryDelayMs(3, 250, 0, 0.999), 999);
  // Capped at 8 s, still jittered.
  EXPECT_EQ(RetryDelayMs(12, 250, 0, 0.0), 4000);
  EXPECT_EQ(RetryDelayMs(12, 250, 0, 0.999), 7996);
  // Retry-After wins when longer, up to 30 s; a shorter one does not shorten the backoff.
  EXPECT_EQ(RetryDelayMs(1, 250, 2, 0.3), 2000);
  EXPECT_EQ(RetryDelayMs(1, 250, 3600, 0.3), 30000);
  EXPECT_EQ(RetryDelayMs(5, 250, 1, 0.0), 2000);
}

// ---- pushing and referrers (client_push.cc) ----

Answer BearerChallenge() {
  return Answer{
      401,
      {{"www-authenticate",
        R"(Bearer realm="https://auth.example.com/token",service="registry.example.com")"}},
      ""};
}

TEST_F(ClientTest, PushesABlobWithAPushScopeTokenToARelativeLocation) {
  const std::string bytes = "index bytes";
  const std::string digest = Sha256Digest(bytes);
  std::vector<std::string> scopes;
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url.rfind("https://auth.example.com/token?", 0) == 0) {
      scopes.push_back(r.url.substr(r.url.find("scope=")));
      return Answer{200, {}, R"({"token":"PUSH","expires_in":300})"};
    }
    if (r.Header("Authorization") != "Bearer PUSH") return BearerChallenge();
    if (r.method == "HEAD") return NotFound("BLOB_UNKNOWN");
    if (r.method == "POST") {
      EXPECT_EQ(r.url, "https://registry.example.com/v2/team/app/blobs/uploads/");
      return Answer{202, {{"location", "/v2/team/app/blobs/uploads/u1?_state=abc"}}, ""};
    }
    EXPECT_EQ(r.method, "PUT");
    EXPECT_EQ(r.url,
              "https://registry.example.com/v2/team/app/blobs/uploads/u1?_state=abc&digest=" +
                  digest);
    EXPECT_EQ(r.body, bytes);
    return Answer{201, {{"docker-content-digest", digest}}, ""};
  });
  auto pushed = client.PushBlob(Ref("registry.example.com/team/app:1"), bytes);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(*pushed, digest);
  ASSERT_FALSE(scopes.empty());
  for (const std::string& s : scopes) EXPECT_EQ(s, "scope=repository%3Ateam%2Fapp%3Apull%2Cpush");
}

TEST_F(ClientTest, PushRefusesAnUploadLocationOnAnotherHost) {
  bool put = false;
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.method == "HEAD") return NotFound("BLOB_UNKNOWN");
    if (r.method == "POST") {
      return Answer{202, {{"location", "https://elsewhere.example.com/upload/u1"}}, ""};
    }
    put = true;
    return Answer{201, {}, ""};
  });
  auto pushed = client.PushBlob(Ref("registry.example.com/team/app:1"), "x");
  EXPECT_EQ(pushed.status().code(), Code::kCorrupt) << pushed.status().ToString();
  EXPECT_FALSE(put);
}

TEST_F(ClientTest, PushesAManifestAndSkipsABlobTheRegistryHas) {
  const std::string body = kManifest;
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.method == "HEAD") return Answer{200, {}, ""};
    EXPECT_EQ(r.method, "PUT");
    EXPECT_EQ(r.url, "https://registry.example.com/v2/team/app/manifests/v1");
    EXPECT_EQ(r.Header("Content-Type"), "application/vnd.oci.image.manifest.v1+json");
    EXPECT_EQ(r.body, body);
    return Answer{201, {}, ""};
  });
  EXPECT_TRUE(client.PushBlob(Ref("registry.example.com/team/app:1"), "x").ok());
  auto digest = client.PutManifest(Ref("registry.example.com/team/app:1"), "v1",
                                   "application/vnd.oci.image.manifest.v1+json", body);
  ASSERT_TRUE(digest.ok()) << digest.status().ToString();
  EXPECT_EQ(*digest, Sha256Digest(body));
  EXPECT_EQ(transport_->seen().size(), 2u);  // the HEAD and the manifest PUT, no upload
}

TEST_F(ClientTest, ReferrersComeFromTheApiElseFromTheTagSchema) {
  const std::string subject = "sha256:" + std::string(64, 'a');
  const std::string index =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)"
      R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:)" +
      std::string(64, 'b') +
      R"(","size":10,"artifactType":"application/x.other"},)"
      R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:)" +
      std::string(64, 'c') + R"(","size":10,"artifactType":"application/x.wanted"}]})";
  bool api = false;
  Client& client = Make([&](const Seen& r) -> Answer {
    if (r.url.find("/referrers/" + subject) != std::string::npos) {
      return api ? Answer{200, {{"content-type", "application/vnd.oci.image.index.v1+json"}}, index}
                 : Answer{404, {}, "404 page not found"};
    }
    if (r.url ==
        "https://registry.example.com/v2/team/app/manifests/sha256-" + std::string(64, 'a')) {
      return Answer{200, {{"content-type", "application/vnd.oci.image.index.v1+json"}}, index};
    }
    return NotFound("MANIFEST_UNKNOWN");
  });
  auto tagged = client.ListReferrers(Ref("registry.example.com/team/app:1"), subject,
                                     "application/x.wanted");
  ASSERT_TRUE(tagged.ok()) << tagged.status().ToString();
  EXPECT_FALSE(tagged->from_api);
  ASSERT_EQ(tagged->manifests.size(), 1u);
  EXPECT_EQ(tagged->manifests[0].digest, "sha256:" + std::string(64, 'c'));
  api = true;
  auto listed = client.ListReferrers(Ref("registry.example.com/team/app:1"), subject);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_TRUE(listed->from_api);
  EXPECT_EQ(listed->manifests.size(), 2u);
  api = false;
  auto none = client.ListReferrers(Ref("registry.example.com/team/other:1"), subject);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->manifests.empty());
}

}  // namespace
}  // namespace imgfs::registry
