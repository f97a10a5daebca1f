#include "tests/support/blob_proxy.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <thread>

namespace imgfs::test {
namespace {

constexpr const char* kPython = "/usr/bin/python3";

}  // namespace

std::string ProxiedRequest::ToString() const {
  std::ostringstream out;
  out << method << " " << path;
  if (!range.empty()) out << " Range=" << range;
  out << " -> " << status << " " << bytes << " bytes";
  if (start >= 0) out << " from offset " << start;
  if (flipped) out << " (bit flipped)";
  if (aborted) out << " (aborted)";
  if (!fault.empty()) out << " (" << fault << (stalled ? ", stalled" : "") << ")";
  return out.str();
}

Result<std::unique_ptr<BlobProxy>> BlobProxy::Start(int upstream_port) {
  if (!IsExecutable(kPython)) {
    return Status::NotFound("/usr/bin/python3 not installed: run scripts/setup");
  }
  std::unique_ptr<BlobProxy> proxy(new BlobProxy());
  const std::string port_file = proxy->dir_.Sub("port");
  const std::string script = std::string(IMGFS_SOURCE_DIR) + "/tests/support/blob_proxy.py";
  IMGFS_RETURN_IF_ERROR(proxy->ClearFlips());
  IMGFS_RETURN_IF_ERROR(proxy->process_.Start(
      {kPython, script, "--upstream-port", std::to_string(upstream_port), "--log",
       proxy->log_path(), "--control", proxy->dir_.Sub("control.json"), "--port-file", port_file},
      proxy->dir_.Sub("proxy.log"), proxy->dir_.Sub("proxy.log")));
  for (int i = 0; i < 300; ++i) {
    auto port = ReadFile(port_file);
    if (port.ok() && !port->empty()) {
      proxy->port_ = std::stoi(*port);
      if (PortAcceptsConnections(proxy->port_)) return proxy;
    }
    if (!proxy->process_.running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto log = ReadFile(proxy->dir_.Sub("proxy.log"));
  return Status::Unavailable("the blob proxy (tests/support/blob_proxy.py) did not start: " +
                             (log.ok() ? *log : log.status().message()));
}

BlobProxy::~BlobProxy() { process_.Stop(1000); }

Status BlobProxy::WriteControl() {
  const std::string json = "{\"flips\": " + flips_ + ", \"faults\": " + faults_ +
                           ", \"tags_page_size\": " + std::to_string(tags_page_size_) +
                           ", \"redirect_blobs\": " + nlohmann::json(redirect_blobs_).dump() + "}";
  // rename() makes the switch atomic for the proxy, which re-reads the file per request.
  const std::string tmp = dir_.Sub("control.json.tmp");
  IMGFS_RETURN_IF_ERROR(WriteFile(tmp, json));
  if (std::rename(tmp.c_str(), dir_.Sub("control.json").c_str()) != 0) {
    return Status::IoError("cannot replace " + dir_.Sub("control.json"));
  }
  return Status::Ok();
}

Status BlobProxy::SetFlip(const std::string& digest, uint64_t offset) {
  flips_ = nlohmann::json::array({{{"digest", digest}, {"offset", offset}}}).dump();
  return WriteControl();
}

Status BlobProxy::ClearFlips() {
  flips_ = "[]";
  return WriteControl();
}

Status BlobProxy::SetFault(const std::string& path_part, Fault fault, uint64_t after, int times) {
  const char* mode = fault == Fault::kStall ? "stall" : fault == Fault::kCut ? "cut" : "endless";
  faults_ = nlohmann::json::array({{{"path", path_part},
                                    {"mode", mode},
                                    {"after", after},
                                    {"times", times},
                                    {"id", ++fault_id_}}})
                .dump();
  return WriteControl();
}

Status BlobProxy::SetStatusFault(const std::string& path_part, int status, int times,
                                 int retry_after_s) {
  faults_ = nlohmann::json::array({{{"path", path_part},
                                    {"mode", "status"},
                                    {"status", status},
                                    {"times", times},
                                    {"retry_after", retry_after_s},
                                    {"id", ++fault_id_}}})
                .dump();
  return WriteControl();
}

Status BlobProxy::ClearFaults() {
  faults_ = "[]";
  return WriteControl();
}

Status BlobProxy::SetTagsPageSize(int n) {
  tags_page_size_ = n;
  return WriteControl();
}

Status BlobProxy::SetRedirectBlobs(const std::string& origin) {
  redirect_blobs_ = origin;
  return WriteControl();
}

Result<std::vector<ProxiedRequest>> BlobProxy::Requests() const {
  auto data = ReadFile(log_path());
  if (!data.ok()) {
    // Nothing was logged yet: the proxy creates the file on start, so this is an error.
    return data.status().WithContext("reading the proxy's request log");
  }
  std::vector<ProxiedRequest> out;
  std::istringstream in(*data);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return Status::Corrupt("unreadable proxy log line: " + line);
    }
    ProxiedRequest r;
    try {
      r.method = j.value("method", "");
      r.path = j.value("path", "");
      r.range = j.value("range", "");
      r.status = j.value("status", 0);
      r.bytes = j.value("bytes", uint64_t{0});
      r.digest = j.value("digest", "");
      r.start = j.value("start", int64_t{-1});
      r.flipped = j.value("flipped", false);
      r.aborted = j.value("aborted", false);
      r.fault = j.value("fault", "");
      r.stalled = j.value("stalled", false);
      r.authorization = j.value("authorization", "");
    } catch (const nlohmann::json::exception& e) {
      return Status::Corrupt("proxy log line " + line + ": " + e.what());
    }
    out.push_back(std::move(r));
  }
  return out;
}

bool BlobProxy::WaitForStall(double seconds) const {
  return WaitUntil(
      [&] {
        auto requests = Requests();
        return requests.ok() && std::any_of(requests->begin(), requests->end(),
                                            [](const ProxiedRequest& q) { return q.stalled; });
      },
      seconds);
}

std::string BlobProxy::Describe() const {
  auto requests = Requests();
  if (!requests.ok()) return requests.status().ToString();
  std::string out;
  for (const ProxiedRequest& r : *requests) out += "  " + r.ToString() + "\n";
  return out;
}

uint64_t BlobBytes(const std::vector<ProxiedRequest>& requests, const std::string& digest) {
  uint64_t total = 0;
  for (const ProxiedRequest& r : requests) {
    if (r.digest == digest) total += r.bytes;
  }
  return total;
}

Result<ProxiedRegistry> StartProxiedRegistry(const RegistryOptions& options) {
  ProxiedRegistry out;
  IMGFS_ASSIGN_OR_RETURN(out.registry, RegistryServer::Create(options));
  IMGFS_ASSIGN_OR_RETURN(out.proxy, BlobProxy::Start(out.registry->port()));
  return out;
}

}  // namespace imgfs::test
