// The faults a registry really shows, injected by the harness's fault proxy (BlobProxy) in
// front of a real docker-registry with token auth, under a real mount of an eStargz image
// (converted by the real converter), so every file read is a range request of its own:
//   - 503 twice, 429 with Retry-After, a connection reset half-way through a body, a body
//     that stalls, a 401 in the middle of the mount (the token refused, as when it expired):
//     the read returns the reference bytes after the retries (and the 401 makes imgfs fetch a
//     new token);
//   - a fault that outlasts the retries (503 for good, a registry gone silent for good): the
//     read gets EIO within the configured time, the daemon log names the blob, and files of
//     the image's other layer keep being served.
// One token server, registry and image serve the whole binary; each test has its own proxy,
// cache and mount.
#include <fcntl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/blob_proxy.h"
#include "tests/support/containerd.h"
#include "tests/support/files.h"
#include "tests/support/image_builder.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/lazy_images.h"
#include "tests/support/process.h"
#include "tests/support/registry_server.h"
#include "tests/support/sanitizer.h"
#include "tests/support/test_world.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr char kUser[] = "fault-user";
constexpr char kPassword[] = "fault-secret";
constexpr char kRepo[] = "imgfs/faults";
// The image's layers (tests/support/lazy_images.h): files of one/ keep being served, the
// layer of two/ gets the faults.
std::string SteadyFile(int i) { return "one/f" + std::to_string(i) + ".bin"; }
std::string FaultyFile(int i) { return "two/f" + std::to_string(i) + ".bin"; }

// The file's bytes through the mount, or the errno of the failed open/read.
struct ReadOutcome {
  std::string data;
  int error = 0;
  double seconds = 0;
};

ReadOutcome ReadThrough(const std::string& path) {
  ReadOutcome out;
  const auto start = Clock::now();
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    out.error = errno;
  } else {
    char buf[1 << 16];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0) {
        out.error = errno;
        break;
      }
      if (n == 0) break;
      out.data.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return out;
}

// What the suite shares.
struct FaultWorld {
  std::unique_ptr<TokenServer> tokens;
  std::unique_ptr<RegistryServer> registry;
  std::string steady_digest;  // the layer of one/
  std::string faulty_digest;  // the layer of two/
  Status status;
};

FaultWorld* world = nullptr;

Status BuildWorld(FaultWorld& w) {
  IMGFS_RETURN_IF_ERROR(CheckImgfsBinary());
  IMGFS_ASSIGN_OR_RETURN(RegistryServer * plain, TestWorld::Get().Registry());
  IMGFS_ASSIGN_OR_RETURN(w.tokens, TokenServer::Start({{kUser, kPassword}}));
  RegistryOptions options;
  options.auth = RegistryOptions::Auth::kToken;
  options.token_server = w.tokens.get();
  IMGFS_ASSIGN_OR_RETURN(w.registry, RegistryServer::Create(options));

  TempDir work("faults-image");
  IMGFS_ASSIGN_OR_RETURN(OciLayout layout, OciLayout::Init(work.Sub("layout")));
  IMGFS_RETURN_IF_ERROR(BuildTwoLayerImage(layout, "faults", work.path()));
  const std::string source = plain->host() + "/" + kRepo + ":oci";
  IMGFS_RETURN_IF_ERROR(PushImage(layout, "faults", source).status());
  // The real converter, then the conversion as it is copied into the token registry.
  PrivateContainerd containerd;
  IMGFS_RETURN_IF_ERROR(containerd.Start());
  const std::string converted = plain->host() + "/" + kRepo + ":estargz";
  IMGFS_RETURN_IF_ERROR(containerd.ConvertAndPush(source, "estargz", converted));
  IMGFS_ASSIGN_OR_RETURN(RegistryManifest manifest, FetchManifest(plain->host(), kRepo, "estargz"));
  if (manifest.layers.size() != 2 ||
      !manifest.layers[1].annotations.count(kEstargzTocDigestAnnotation)) {
    return Status::Internal("the eStargz conversion is not two eStargz layers: " + manifest.body);
  }
  w.steady_digest = manifest.layers[0].digest;
  w.faulty_digest = manifest.layers[1].digest;
  IMGFS_ASSIGN_OR_RETURN(std::string skopeo, SkopeoBinary());
  return RunOk({skopeo, "copy", "--preserve-digests", "--src-tls-verify=false",
                "--dest-tls-verify=false", "--dest-creds", std::string(kUser) + ":" + kPassword,
                "docker://" + converted, "docker://" + w.registry->host() + "/" + kRepo + ":v1"});
}

class FaultProxyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world = new FaultWorld();
    world->status = BuildWorld(*world);
  }
  static void TearDownTestSuite() {
    delete world;
    world = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(world->status.ok()) << "suite set-up: " << world->status.ToString();
    auto proxy = BlobProxy::Start(world->registry->port());
    ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
    proxy_ = std::move(*proxy);
    ASSERT_TRUE(WriteDockerConfig(config_.path(), proxy_->host(), kUser, kPassword).ok());
    mount_ = std::make_unique<ImgfsMount>(cache_.path(), config_.path());
    // Only what is read is fetched; a silent registry fails an attempt after 1 s.
    RunResult r = mount_->Mount(proxy_->host() + "/" + kRepo + ":v1",
                                {"--prefetch", "none", "--stall-timeout", "1"});
    ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount_->LogTail();
  }

  // Reads `name` and expects its reference bytes.
  void ExpectReads(const std::string& name) {
    ReadOutcome r = ReadThrough(mount_->Path(name));
    ASSERT_EQ(r.error, 0) << name << ": " << std::strerror(r.error) << "\nproxy:\n"
                          << proxy_->Describe() << "\ndaemon log:\n"
                          << mount_->LogTail();
    EXPECT_TRUE(r.data == TwoLayerFileContent(name))
        << name << ": " << r.data.size() << " bytes read, not "
        << "the reference's " << kTwoLayerFileSize;
  }

  // The proxy's requests for the faulty layer.
  std::vector<ProxiedRequest> FaultyRequests() {
    std::vector<ProxiedRequest> out;
    auto all = proxy_->Requests();
    EXPECT_TRUE(all.ok()) << all.status().ToString();
    if (!all.ok()) return out;
    for (const ProxiedRequest& q : *all) {
      if (q.path.find(world->faulty_digest) != std::string::npos && !q.stalled) out.push_back(q);
    }
    return out;
  }
  int CountStatus(int status) {
    int n = 0;
    for (const ProxiedRequest& q : FaultyRequests()) n += q.status == status;
    return n;
  }

  // A fault that outlasts the retries: EIO within `bound_s`, the blob named in the daemon log,
  // and the other layer still served.
  void ExpectEioThenOthersServed(double bound_s) {
    ReadOutcome r = ReadThrough(mount_->Path(FaultyFile(1)));
    EXPECT_EQ(r.error, EIO) << "read " << r.data.size() << " bytes\nproxy:\n" << proxy_->Describe();
    EXPECT_LT(r.seconds, ScaledSeconds(bound_s));
    auto log = ReadFile(cache_.Sub("imgfs.log"));
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    // The log line names the registry, the blob and the range.
    EXPECT_THAT(*log, HasSubstr("fetching bytes [")) << *log;
    EXPECT_THAT(*log, HasSubstr(world->faulty_digest + ": registry " + proxy_->host())) << *log;
    for (int i = 0; i < 3; ++i) ExpectReads(SteadyFile(i));
  }

  TempDir cache_{"cache"};
  TempDir config_{"docker"};
  std::unique_ptr<BlobProxy> proxy_;
  std::unique_ptr<ImgfsMount> mount_;
};

TEST_F(FaultProxyTest, Unavailable503TwiceIsRetried) {
  ASSERT_TRUE(proxy_->SetStatusFault(world->faulty_digest, 503, 2).ok());
  ExpectReads(FaultyFile(0));
  EXPECT_EQ(CountStatus(503), 2) << proxy_->Describe();
  EXPECT_GE(CountStatus(206), 1) << proxy_->Describe();
}

TEST_F(FaultProxyTest, TooManyRequestsWaitsForRetryAfter) {
  ASSERT_TRUE(proxy_->SetStatusFault(world->faulty_digest, 429, 1, /*retry_after_s=*/2).ok());
  const auto start = Clock::now();
  ExpectReads(FaultyFile(0));
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(CountStatus(429), 1) << proxy_->Describe();
  EXPECT_GE(took, 2.0) << "Retry-After: 2 was not honoured";
  EXPECT_LT(took, ScaledSeconds(15.0));
}

TEST_F(FaultProxyTest, ConnectionResetHalfWayResumesByRange) {
  ASSERT_TRUE(
      proxy_->SetFault(world->faulty_digest, BlobProxy::Fault::kCut, kTwoLayerFileSize / 2, 1)
          .ok());
  ExpectReads(FaultyFile(0));
  std::vector<ProxiedRequest> requests = FaultyRequests();
  const ProxiedRequest* cut = nullptr;
  for (const ProxiedRequest& q : requests) {
    if (q.fault == "cut") cut = &q;
  }
  ASSERT_NE(cut, nullptr) << proxy_->Describe();
  EXPECT_EQ(cut->bytes, kTwoLayerFileSize / 2);
  bool resumed = false;
  for (const ProxiedRequest& q : requests) {
    resumed |= q.fault.empty() && q.start == cut->start + static_cast<int64_t>(cut->bytes);
  }
  EXPECT_TRUE(resumed) << "no request resumed at blob offset " << cut->start + cut->bytes << ":\n"
                       << proxy_->Describe();
}

TEST_F(FaultProxyTest, StalledBodyIsRetriedAfterTheStallTimeout) {
  ASSERT_TRUE(proxy_->SetFault(world->faulty_digest, BlobProxy::Fault::kStall, 64 * 1024, 1).ok());
  const auto start = Clock::now();
  ExpectReads(FaultyFile(0));
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_TRUE(proxy_->WaitForStall(0)) << proxy_->Describe();
  // 1 s of silence (--stall-timeout 1; progress is checked once a second), then a resume.
  EXPECT_GE(took, 1.0);
  EXPECT_LT(took, ScaledSeconds(4.0)) << "the silence after a burst was noticed late";
}

TEST_F(FaultProxyTest, UnauthorizedMidMountRenewsTheToken) {
  ExpectReads(FaultyFile(2));  // the mount holds a token for the repository now
  auto token_requests = [] {
    auto log = ReadFile(world->tokens->log_path());
    size_t n = 0;
    for (size_t pos = 0; log.ok() && (pos = log->find("GET /token", pos)) != std::string::npos;
         ++pos) {
      ++n;
    }
    return n;
  };
  const size_t before = token_requests();
  ASSERT_GT(before, 0u);
  ASSERT_TRUE(proxy_->SetStatusFault(world->faulty_digest, 401, 1).ok());
  ExpectReads(FaultyFile(0));
  EXPECT_EQ(CountStatus(401), 1) << proxy_->Describe();
  EXPECT_GT(token_requests(), before) << "no new token after the 401";
}

TEST_F(FaultProxyTest, Permanent503IsEioAndOtherFilesAreServed) {
  ASSERT_TRUE(proxy_->SetStatusFault(world->faulty_digest, 503).ok());
  ExpectEioThenOthersServed(30);
  EXPECT_GE(CountStatus(503), 3) << proxy_->Describe();
}

TEST_F(FaultProxyTest, PermanentStallIsEioWithinTheStallTimeoutAndOtherFilesAreServed) {
  // 1000 bytes, then silence, on every attempt (each resume gains 1000 bytes of the chunk):
  // 5 attempts of 1-2 s of silence each, plus at most 3.75 s of backoff.
  ASSERT_TRUE(proxy_->SetFault(world->faulty_digest, BlobProxy::Fault::kStall, 1000).ok());
  ExpectEioThenOthersServed(20);
}

}  // namespace
}  // namespace imgfs::test
