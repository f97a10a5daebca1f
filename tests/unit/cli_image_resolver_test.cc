// Pull policies of the cache in front of the registry: which requests each policy makes.
#include "cli/image_resolver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <mutex>

#include "base/digest.h"
#include "registry/http.h"
#include "registry/manifest.h"
#include "tests/support/files.h"

namespace imgfs::cli {
namespace {

using ::testing::HasSubstr;

// A registry in memory: one repository, tags that can be moved, and a request log.
class MemoryRegistry : public registry::HttpTransport {
 public:
  void Put(const std::string& tag, const std::string& manifest) {
    std::lock_guard<std::mutex> lock(mu_);
    tags_[tag] = manifest;
    docs_[Sha256Digest(manifest)] = manifest;
  }
  void PutBlob(const std::string& bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    docs_[Sha256Digest(bytes)] = bytes;
  }
  void SetDown(bool down) { down_ = down; }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  void ClearRequests() {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.clear();
  }

  Status Perform(const registry::HttpRequest& request, registry::HttpResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    *response = registry::HttpResponse();
    if (down_) return Status::Unavailable("Failed to connect: Connection refused");
    std::string path = request.url.substr(request.url.find("/v2/"));
    requests_.push_back(request.method + " " + path);
    std::string last = path.substr(path.rfind('/') + 1);
    const std::string* body = nullptr;
    if (path == "/v2/") {
      response->status = 200;
      return Status::Ok();
    }
    if (path.find("/manifests/") != std::string::npos) {
      auto t = tags_.find(last);
      if (t != tags_.end()) body = &t->second;
    }
    if (body == nullptr) {
      auto d = docs_.find(last);
      if (d != docs_.end()) body = &d->second;
    }
    if (body == nullptr) {
      response->status = 404;
      response->body = R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})";
      return Status::Ok();
    }
    response->status = 200;
    response->headers = {{"content-type", std::string(registry::kOciManifest)},
                         {"docker-content-digest", Sha256Digest(*body)},
                         {"content-length", std::to_string(body->size())}};
    if (request.method == "HEAD") return Status::Ok();
    if (request.sink) {
      request.sink(*body);
    } else {
      response->body = *body;
    }
    return Status::Ok();
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> tags_;
  std::map<std::string, std::string> docs_;
  std::vector<std::string> requests_;
  bool down_ = false;
};

class ImageResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cache = cache::Cache::Open(dir_.string());
    ASSERT_TRUE(cache.ok()) << cache.status().ToString();
    cache_ = std::move(cache).value();
    auto transport = std::make_unique<MemoryRegistry>();
    registry_ = transport.get();
    registry::ClientOptions options;
    options.docker_config_dir = dir_.string();  // no credentials
    options.max_attempts = 1;
    client_ = std::make_unique<registry::Client>(options, std::move(transport));
    ref_ = *registry::Reference::Parse("127.0.0.1:5000/team/app:v1");
  }
  void TearDown() override { cache_.reset(); }

  // An image whose config says `note`; returns its manifest digest.
  std::string PushImage(const std::string& tag, const std::string& note) {
    std::string config =
        R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Labels":{"n":")" +
        note + R"("}}})";
    registry_->PutBlob(config);
    std::string manifest =
        R"({"schemaVersion":2,"mediaType":")" + std::string(registry::kOciManifest) +
        R"(","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
        Sha256Digest(config) + R"(","size":)" + std::to_string(config.size()) + R"(},"layers":[]})";
    registry_->Put(tag, manifest);
    return Sha256Digest(manifest);
  }

  Result<registry::ResolvedImage> Resolve(PullPolicy policy) {
    return ResolveImage(ref_, *registry::Platform::Parse("linux/amd64"), policy, client_.get(),
                        cache_.get());
  }

  test::TempDir tmp_{"resolver"};
  const std::filesystem::path dir_ = tmp_.Sub("root");  // made by Cache::Open
  std::unique_ptr<cache::Cache> cache_;
  MemoryRegistry* registry_ = nullptr;
  std::unique_ptr<registry::Client> client_;
  registry::Reference ref_;
};

TEST_F(ImageResolverTest, MissingAsksTheRegistryOnceThenNeedsNoNetwork) {
  std::string digest = PushImage("v1", "first");
  auto first = Resolve(PullPolicy::kMissing);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->manifest.digest, digest);
  EXPECT_THAT(first->config, HasSubstr("first"));

  registry_->SetDown(true);
  auto second = Resolve(PullPolicy::kMissing);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->manifest.digest, digest);
  EXPECT_EQ(second->config, first->config);
}

TEST_F(ImageResolverTest, MissingKeepsTheCachedTagEvenWhenItMoved) {
  std::string old_digest = PushImage("v1", "first");
  ASSERT_TRUE(Resolve(PullPolicy::kMissing).ok());
  PushImage("v1", "second");
  registry_->ClearRequests();
  auto again = Resolve(PullPolicy::kMissing);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->manifest.digest, old_digest);
  EXPECT_TRUE(registry_->requests().empty());
}

TEST_F(ImageResolverTest, AlwaysRevalidatesWithHeadAndFollowsAMovedTag) {
  PushImage("v1", "first");
  ASSERT_TRUE(Resolve(PullPolicy::kMissing).ok());

  registry_->ClearRequests();
  auto same = Resolve(PullPolicy::kAlways);
  ASSERT_TRUE(same.ok()) << same.status().ToString();
  EXPECT_THAT(registry_->requests(),
              ::testing::Contains(::testing::StartsWith("HEAD /v2/team/app/manifests/v1")));
  for (const std::string& r : registry_->requests()) {
    EXPECT_THAT(r, ::testing::Not(::testing::StartsWith("GET /v2/team/app/manifests/")))
        << "an unchanged tag is revalidated with HEAD only";
  }

  std::string moved = PushImage("v1", "second");
  auto now = Resolve(PullPolicy::kAlways);
  ASSERT_TRUE(now.ok()) << now.status().ToString();
  EXPECT_EQ(now->manifest.digest, moved);
  EXPECT_THAT(now->config, HasSubstr("second"));
  // The moved tag is what a later offline resolve sees.
  registry_->SetDown(true);
  auto offline = Resolve(PullPolicy::kMissing);
  ASSERT_TRUE(offline.ok()) << offline.status().ToString();
  EXPECT_EQ(offline->manifest.digest, moved);
}

TEST_F(ImageResolverTest, AlwaysFailsWhenTheRegistryIsDown) {
  PushImage("v1", "first");
  ASSERT_TRUE(Resolve(PullPolicy::kMissing).ok());
  registry_->SetDown(true);
  auto r = Resolve(PullPolicy::kAlways);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
}

TEST_F(ImageResolverTest, NeverUsesOnlyTheCache) {
  PushImage("v1", "first");
  auto r = Resolve(PullPolicy::kNever);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("--pull=never"));
  EXPECT_TRUE(registry_->requests().empty());

  ASSERT_TRUE(Resolve(PullPolicy::kMissing).ok());
  registry_->ClearRequests();
  EXPECT_TRUE(Resolve(PullPolicy::kNever).ok());
  EXPECT_TRUE(registry_->requests().empty());
}

TEST_F(ImageResolverTest, ADigestReferenceIsServedFromTheCacheWhateverThePolicy) {
  std::string digest = PushImage("v1", "first");
  ref_ = *registry::Reference::Parse("127.0.0.1:5000/team/app@" + digest);
  ASSERT_TRUE(Resolve(PullPolicy::kAlways).ok());
  registry_->SetDown(true);
  for (PullPolicy p : {PullPolicy::kMissing, PullPolicy::kAlways, PullPolicy::kNever}) {
    auto r = Resolve(p);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->manifest.digest, digest);
  }
}

TEST(PullPolicyTest, ParsesDockersWords) {
  EXPECT_EQ(*ParsePullPolicy("missing"), PullPolicy::kMissing);
  EXPECT_EQ(*ParsePullPolicy("always"), PullPolicy::kAlways);
  EXPECT_EQ(*ParsePullPolicy("never"), PullPolicy::kNever);
  EXPECT_EQ(ParsePullPolicy("sometimes").status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace imgfs::cli
