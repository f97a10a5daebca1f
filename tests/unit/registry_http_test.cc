// The curl transport against a real HTTP server on loopback (python3's http.server over a
// temp dir): what a sink's exception does to a transfer and to the handle pool, and that a
// cancelled transfer ends without touching the network.
#include "registry/http.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "registry/curl_library.h"
#include "tests/support/files.h"
#include "tests/support/process.h"

namespace imgfs::registry {
namespace {

using ::testing::HasSubstr;

class CurlTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(test::IsExecutable("/usr/bin/python3")) << "python3 is missing: run scripts/setup";
    ASSERT_TRUE(test::WriteFile(dir_.Sub("blob"), std::string(1 << 20, 'z')).ok());
    auto port = test::FreeTcpPort();
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    port_ = *port;
    ASSERT_TRUE(server_
                    .Start({"/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1",
                            "--directory", dir_.path(), std::to_string(port_)},
                           dir_.Sub("server.log"), dir_.Sub("server.log"))
                    .ok());
    for (int i = 0; i < 250 && !test::PortAcceptsConnections(port_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(test::PortAcceptsConnections(port_)) << "python3 -m http.server did not start";
  }

  std::string Url(const std::string& name) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + name;
  }

  test::TempDir dir_{"http"};
  test::BackgroundProcess server_;
  int port_ = 0;
};

// In a fresh process (a death-test child): making a transport loads nothing, its first
// request loads libcurl once, and every caller gets that one table.
TEST(CurlLibraryTest, TheFirstRequestLoadsLibcurlOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        std::unique_ptr<HttpTransport> transport = NewCurlTransport({});
        if (CurlLoaded()) std::_Exit(10);
        HttpRequest request;
        request.url = "http://127.0.0.1:1/";  // refused: loading comes before connecting
        HttpResponse response;
        if (transport->Perform(request, &response).ok()) std::_Exit(11);
        if (!CurlLoaded()) std::_Exit(12);
        std::vector<std::thread> threads;
        std::atomic<int> different{0};
        for (int i = 0; i < 8; ++i) {
          threads.emplace_back([&] {
            Result<const CurlLibrary*> curl = LoadCurl();
            if (!curl.ok() || *curl != &LoadedCurl()) different.fetch_add(1);
          });
        }
        for (std::thread& t : threads) t.join();
        std::_Exit(different.load() == 0 ? 0 : 13);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(CurlLibraryTest, TheLoadedLibraryIsAtLeastTheHeadersVersion) {
  Result<const CurlLibrary*> curl = LoadCurl();
  ASSERT_TRUE(curl.ok()) << curl.status().ToString();
  const curl_version_info_data* info = (*curl)->version_info(CURLVERSION_NOW);
  ASSERT_NE(info, nullptr);
  EXPECT_GE(info->version_num, static_cast<unsigned>(LIBCURL_VERSION_NUM)) << info->version;
  EXPECT_NE((*curl)->easy_setopt, nullptr);
}

TEST_F(CurlTransportTest, AThrowingSinkEndsItsTransferAndNothingElse) {
  std::unique_ptr<HttpTransport> transport = NewCurlTransport({});
  HttpRequest request;
  request.url = Url("blob");
  request.sink = [](std::string_view) -> bool { throw std::runtime_error("sink exploded"); };
  HttpResponse response;
  Status st = transport->Perform(request, &response);
  EXPECT_EQ(st.code(), Code::kInternal);
  EXPECT_THAT(st.message(), HasSubstr("sink exploded"));

  // The pooled handle is fine afterwards.
  uint64_t got = 0;
  request.sink = [&](std::string_view chunk) {
    got += chunk.size();
    return true;
  };
  st = transport->Perform(request, &response);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(got, 1u << 20);
}

TEST_F(CurlTransportTest, CancelledRequestsDoNotStart) {
  std::unique_ptr<HttpTransport> transport = NewCurlTransport({});
  std::atomic<bool> cancel{true};
  HttpRequest request;
  request.url = Url("blob");
  request.cancel = &cancel;
  HttpResponse response;
  Status st = transport->Perform(request, &response);
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_THAT(st.message(), HasSubstr("cancelled"));
  EXPECT_EQ(response.status, 0);

  // Cancelled in the middle of the body.
  cancel = false;
  request.sink = [&](std::string_view) {
    cancel = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return true;
  };
  st = transport->Perform(request, &response);
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  EXPECT_THAT(st.message(), HasSubstr("cancelled"));
}

}  // namespace
}  // namespace imgfs::registry
