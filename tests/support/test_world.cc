#include "tests/support/test_world.h"

namespace imgfs::test {
namespace {
std::unique_ptr<TestWorld>& Instance() {
  static std::unique_ptr<TestWorld> world;
  return world;
}
}  // namespace

TestWorld& TestWorld::Get() {
  if (!Instance()) Instance() = std::make_unique<TestWorld>();
  return *Instance();
}

void TestWorld::Reset() {
  if (Instance()) {
    auto& at_reset = Instance()->at_reset_;
    for (auto it = at_reset.rbegin(); it != at_reset.rend(); ++it) (*it)();
  }
  Instance().reset();
}

void TestWorld::AtReset(std::function<void()> teardown) {
  at_reset_.push_back(std::move(teardown));
}

Result<RegistryServer*> TestWorld::Registry() {
  if (!registry_) {
    IMGFS_ASSIGN_OR_RETURN(registry_, RegistryServer::Create());
  }
  return registry_.get();
}

Result<const TestImages*> TestWorld::Images(const std::string& name) {
  // amd64 and arm64 always come together: the index needs both.
  std::string key = (name == "amd64" || name == "arm64") ? "platforms" : name;
  auto it = images_.find(key);
  if (it == images_.end()) {
    std::vector<std::string> names = key == "platforms" ? std::vector<std::string>{"amd64", "arm64"}
                                                        : std::vector<std::string>{name};
    IMGFS_ASSIGN_OR_RETURN(auto built, TestImages::Build(names));
    it = images_.emplace(key, std::move(built)).first;
  }
  return it->second.get();
}

std::string TestWorld::ReferenceRoot(const std::string& name) {
  auto images = Images(name);
  if (!images.ok()) return "/nonexistent-reference-" + name;
  return (*images)->ReferenceRoot(name);
}

Result<PushedImage> TestWorld::Pushed(const std::string& name, ManifestFormat format) {
  std::string tag = format == ManifestFormat::kOci ? "oci" : "v2";
  std::string key = name + ":" + tag;
  auto it = pushed_.find(key);
  if (it != pushed_.end()) return it->second;
  IMGFS_ASSIGN_OR_RETURN(RegistryServer * registry, Registry());
  IMGFS_ASSIGN_OR_RETURN(const TestImages* images, Images(name));
  IMGFS_ASSIGN_OR_RETURN(PushedImage pushed, images->Push(name, registry->host(), "imgfs/" + name,
                                                          tag, PushOptions{format, ""}));
  pushed_[key] = pushed;
  return pushed;
}

Result<PushedImage> TestWorld::MultiPlatform() {
  auto it = pushed_.find("multi");
  if (it != pushed_.end()) return it->second;
  IMGFS_ASSIGN_OR_RETURN(RegistryServer * registry, Registry());
  IMGFS_ASSIGN_OR_RETURN(const TestImages* images, Images("amd64"));
  IMGFS_ASSIGN_OR_RETURN(PushedImage pushed,
                         images->PushMultiPlatform(registry->host(), "imgfs/multi", "latest"));
  pushed_["multi"] = pushed;
  return pushed;
}

}  // namespace imgfs::test
