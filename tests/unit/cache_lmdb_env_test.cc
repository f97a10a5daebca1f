// LmdbEnv: errors name the cache, a full map grows, a map grown by another process is adopted,
// a throwing transaction body leaves no lock held.
#include "cache/lmdb_env.h"
#include "tests/support/files.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace imgfs::cache {
namespace {

class LmdbEnvTest : public ::testing::Test {
 protected:
  static Status PutValue(LmdbEnv& env, int i, size_t size) {
    std::string key = "k" + std::to_string(i);
    std::string value(size, static_cast<char>('a' + i % 26));
    return env.Write([&](LmdbTxn& txn) { return txn.Put(Db::kDocs, key, value); });
  }

  static Result<std::string> GetValue(LmdbEnv& env, int i) {
    std::string key = "k" + std::to_string(i), out;
    Status s = env.Read([&](LmdbTxn& txn) { return txn.Get(Db::kDocs, key, &out); });
    if (!s.ok()) return s;
    return out;
  }

  test::TempDir tmp_{"lmdb"};
  const std::string dir_ = tmp_.path();
};

TEST_F(LmdbEnvTest, OpenFailureNamesTheCache) {
  auto env = LmdbEnv::Open(dir_ + "/missing", "/some/cache/root");
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), Code::kIoError);
  EXPECT_NE(env.status().message().find("cache /some/cache/root"), std::string::npos)
      << env.status().message();
}

TEST_F(LmdbEnvTest, MissingKeyIsNotFound) {
  auto env = LmdbEnv::Open(dir_, dir_);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_EQ(GetValue(**env, 1).status().code(), Code::kNotFound);
}

TEST_F(LmdbEnvTest, FullMapGrowsAndTransactionsSucceed) {
  auto env = LmdbEnv::Open(dir_, dir_, 1 << 20);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  uint64_t initial = (*env)->map_size();
  // 8 MiB of values into a 1 MiB map: many MAP_FULL on the way.
  for (int i = 0; i < 128; ++i) {
    ASSERT_TRUE(PutValue(**env, i, 64 << 10).ok()) << i;
  }
  EXPECT_GT((*env)->map_size(), initial);
  for (int i = 0; i < 128; ++i) {
    auto v = GetValue(**env, i);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->size(), size_t{64} << 10);
  }
  // One transaction bigger than the whole current map.
  ASSERT_TRUE(PutValue(**env, 1000, (*env)->map_size() + (1 << 20)).ok());
}

TEST_F(LmdbEnvTest, MapGrownByAnotherProcessIsAdopted) {
  auto env = LmdbEnv::Open(dir_, dir_, 1 << 20);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  ASSERT_TRUE(PutValue(**env, 0, 100).ok());

  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child must not touch the parent's environment; it opens its own.
    auto child_env = LmdbEnv::Open(dir_, dir_, 1 << 20);
    if (!child_env.ok()) _exit(2);
    for (int i = 1; i <= 64; ++i) {
      if (!PutValue(**child_env, i, 64 << 10).ok()) _exit(3);
    }
    _exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  ASSERT_EQ(WEXITSTATUS(wstatus), 0);

  for (int i = 0; i <= 64; ++i) {
    auto v = GetValue(**env, i);
    ASSERT_TRUE(v.ok()) << i << ": " << v.status().ToString();
  }
  ASSERT_TRUE(PutValue(**env, 100, 64 << 10).ok());
}

TEST_F(LmdbEnvTest, ThrowingWriteBodyLeavesNoLockHeld) {
  auto env = LmdbEnv::Open(dir_, dir_);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  LmdbEnv& e = **env;
  EXPECT_THROW(e.Write([&](LmdbTxn& txn) -> Status {
    IMGFS_RETURN_IF_ERROR(txn.Put(Db::kDocs, "k0", "half-done"));
    throw std::runtime_error("a body that throws");
  }),
               std::runtime_error);
  // The aborted write left nothing behind, and the writer lock is free: another thread's
  // write (which would block forever on a leaked lock) and a resize both go through.
  EXPECT_EQ(GetValue(e, 0).status().code(), Code::kNotFound);
  auto writer = std::async(std::launch::async, [&] { return PutValue(e, 1, 100); });
  if (writer.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "a write after the throwing body is still blocked: the lock leaked";
    std::fflush(nullptr);
    std::_Exit(1);
  }
  EXPECT_TRUE(writer.get().ok());
  EXPECT_TRUE(GetValue(e, 1).ok());
  EXPECT_THROW(e.Read([&](LmdbTxn&) -> Status { throw std::runtime_error("read"); }),
               std::runtime_error);
  EXPECT_TRUE(PutValue(e, 2, 1 << 20).ok());
}

TEST_F(LmdbEnvTest, ScanVisitsKeysInOrderFromTheStart) {
  auto env = LmdbEnv::Open(dir_, dir_);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  for (int i : {3, 1, 2, 7}) ASSERT_TRUE(PutValue(**env, i, 4).ok());
  std::vector<std::string> keys;
  ASSERT_TRUE((*env)
                  ->Read([&](LmdbTxn& txn) {
                    keys.clear();
                    return txn.Scan(Db::kDocs, "k2", [&](std::string_view k, std::string_view) {
                      keys.emplace_back(k);
                      return k != "k3";
                    });
                  })
                  .ok());
  EXPECT_EQ(keys, (std::vector<std::string>{"k2", "k3"}));
}

}  // namespace
}  // namespace imgfs::cache
