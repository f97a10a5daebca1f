// The blob proxy the lazy-pull tests measure imgfs with: it must forward unchanged, count
// exactly what it sends, place a flipped bit at the blob offset asked for, and switch back to
// pass-through at run time. Uses the test registry and curl only (no imgfs).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>

#include "tests/support/blob_proxy.h"
#include "tests/support/lazy_images.h"
#include "tests/support/proxied_image_test.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"

namespace imgfs::test {
namespace {

class BlobProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = StartProxiedImage();
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    pushed_ = started->image;
    proxy_ = std::move(started->proxy);
    layer_ = started->manifest.layers.front();
    ASSERT_GT(layer_.size, 1000u);
  }

  std::string BlobUrl(const std::string& host) const {
    return "http://" + host + "/v2/" + pushed_.repo + "/blobs/" + layer_.digest;
  }

  PushedImage pushed_;
  ManifestLayer layer_;
  std::unique_ptr<BlobProxy> proxy_;
};

TEST_F(BlobProxyTest, ForwardsAndCountsRangeRequests) {
  auto direct = HttpGet(BlobUrl(pushed_.host), {"Range: bytes=100-999"});
  ASSERT_TRUE(direct.ok()) << direct.status().ToString();
  ASSERT_EQ(direct->size(), 900u);
  auto proxied = HttpGet(BlobUrl(proxy_->host()), {"Range: bytes=100-999"});
  ASSERT_TRUE(proxied.ok()) << proxied.status().ToString();
  EXPECT_TRUE(*proxied == *direct);
  auto whole = HttpGet(BlobUrl(proxy_->host()));
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_EQ(whole->size(), layer_.size);

  auto requests = proxy_->Requests();
  ASSERT_TRUE(requests.ok()) << requests.status().ToString();
  ASSERT_EQ(requests->size(), 2u) << proxy_->Describe();
  const ProxiedRequest& range = (*requests)[0];
  EXPECT_EQ(range.method, "GET");
  EXPECT_EQ(range.range, "bytes=100-999");
  EXPECT_EQ(range.status, 206);
  EXPECT_EQ(range.bytes, 900u);
  EXPECT_EQ(range.digest, layer_.digest);
  EXPECT_EQ(range.start, 100);
  EXPECT_FALSE(range.flipped);
  const ProxiedRequest& full = (*requests)[1];
  EXPECT_EQ(full.status, 200);
  EXPECT_EQ(full.start, 0);
  EXPECT_EQ(full.bytes, layer_.size);
  EXPECT_EQ(BlobBytes(*requests, layer_.digest), 900u + layer_.size);
}

TEST_F(BlobProxyTest, FlipsTheBitAtTheBlobOffsetUntilCleared) {
  auto clean = HttpGet(BlobUrl(pushed_.host), {"Range: bytes=200-599"});
  ASSERT_TRUE(clean.ok()) << clean.status().ToString();
  ASSERT_TRUE(proxy_->SetFlip(layer_.digest, 300).ok());
  auto damaged = HttpGet(BlobUrl(proxy_->host()), {"Range: bytes=200-599"});
  ASSERT_TRUE(damaged.ok()) << damaged.status().ToString();
  ASSERT_EQ(damaged->size(), clean->size());
  for (size_t i = 0; i < clean->size(); ++i) {
    const char want = i == 100 ? static_cast<char>((*clean)[i] ^ 1) : (*clean)[i];
    ASSERT_EQ((*damaged)[i], want)
        << "byte " << i << " of the body (blob offset " << 200 + i << ")";
  }
  // A range that does not carry the offset is untouched.
  auto elsewhere = HttpGet(BlobUrl(proxy_->host()), {"Range: bytes=400-599"});
  ASSERT_TRUE(elsewhere.ok());
  EXPECT_TRUE(*elsewhere == clean->substr(200));

  ASSERT_TRUE(proxy_->ClearFlips().ok());
  auto healed = HttpGet(BlobUrl(proxy_->host()), {"Range: bytes=200-599"});
  ASSERT_TRUE(healed.ok());
  EXPECT_TRUE(*healed == *clean);

  auto requests = proxy_->Requests();
  ASSERT_TRUE(requests.ok());
  ASSERT_EQ(requests->size(), 3u) << proxy_->Describe();
  EXPECT_TRUE((*requests)[0].flipped);
  EXPECT_FALSE((*requests)[1].flipped);
  EXPECT_FALSE((*requests)[2].flipped);
}

TEST_F(BlobProxyTest, ManifestRequestsPassThroughUnchanged) {
  auto direct = FetchManifest(pushed_.host, pushed_.repo, pushed_.tag);
  auto proxied = FetchManifest(proxy_->host(), pushed_.repo, pushed_.tag);
  ASSERT_TRUE(direct.ok() && proxied.ok());
  EXPECT_EQ(proxied->body, direct->body);
  auto requests = proxy_->Requests();
  ASSERT_TRUE(requests.ok());
  ASSERT_EQ(requests->size(), 1u) << proxy_->Describe();
  EXPECT_EQ((*requests)[0].status, 200);
  EXPECT_EQ((*requests)[0].bytes, direct->body.size());
  EXPECT_FALSE((*requests)[0].IsBlobBody());
}

}  // namespace
}  // namespace imgfs::test
