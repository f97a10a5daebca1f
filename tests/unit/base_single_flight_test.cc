// SingleFlight: one execution per key for concurrent callers, and every way a leader can end
// (a result, an error, an exception, an abandoned Call) answers its waiters.
#include "base/single_flight.h"

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace imgfs {
namespace {

using Flights = SingleFlight<std::string, std::string>;

constexpr auto kDeadline = std::chrono::seconds(20);

// Polls until `key` has `n` waiters; false after the deadline.
bool WaitForWaiters(Flights& flights, const std::string& key, int n) {
  auto until = std::chrono::steady_clock::now() + kDeadline;
  while (flights.WaitersOf(key) < n) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Waits for every future; a caller still blocked after the deadline is a hang, and the test
// process cannot end cleanly with it, so it stops here with a message.
template <typename T>
std::vector<T> GetAll(std::vector<std::future<T>>& futures) {
  std::vector<T> out;
  auto until = std::chrono::steady_clock::now() + kDeadline;
  for (auto& f : futures) {
    if (f.wait_until(until) != std::future_status::ready) {
      ADD_FAILURE() << "a caller is still blocked: its flight was never completed";
      std::fflush(nullptr);
      std::_Exit(1);
    }
    out.push_back(f.get());
  }
  return out;
}

constexpr int kCallers = 8;

TEST(SingleFlightTest, ConcurrentCallersShareOneExecution) {
  Flights flights;
  std::atomic<int> executions{0};
  std::atomic<int> waited{0};
  std::vector<std::future<Result<std::string>>> results;
  for (int i = 0; i < kCallers; ++i) {
    results.push_back(std::async(std::launch::async, [&] {
      bool w = false;
      Result<std::string> r = flights.Do(
          "k",
          [&]() -> Result<std::string> {
            executions.fetch_add(1);
            // Hold the flight until everyone else waits on it.
            if (!WaitForWaiters(flights, "k", kCallers - 1)) return Status::Internal("timeout");
            return std::string("value");
          },
          &w);
      if (w) waited.fetch_add(1);
      return r;
    }));
  }
  for (const auto& r : GetAll(results)) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, "value");
  }
  EXPECT_EQ(executions.load(), 1);
  EXPECT_EQ(waited.load(), kCallers - 1);
  EXPECT_EQ(flights.size(), 0u);
}

TEST(SingleFlightTest, DifferentKeysRunAtOnce) {
  Flights flights;
  std::promise<void> both_running;
  std::shared_future<void> started = both_running.get_future().share();
  std::atomic<int> running{0};
  auto run = [&](std::string key) {
    return flights.Do(key, [&]() -> Result<std::string> {
      if (running.fetch_add(1) + 1 == 2) both_running.set_value();
      // Neither returns before the other started: they are not serialized.
      if (started.wait_for(kDeadline) != std::future_status::ready) {
        return Status::Internal("the other key never ran");
      }
      return key;
    });
  };
  std::vector<std::future<Result<std::string>>> results;
  results.push_back(std::async(std::launch::async, run, "a"));
  results.push_back(std::async(std::launch::async, run, "b"));
  auto out = GetAll(results);
  ASSERT_TRUE(out[0].ok()) << out[0].status().ToString();
  ASSERT_TRUE(out[1].ok()) << out[1].status().ToString();
  EXPECT_EQ(*out[0], "a");
  EXPECT_EQ(*out[1], "b");
}

TEST(SingleFlightTest, FailingLeaderGivesWaitersItsErrorAndIsNotRemembered) {
  Flights flights;
  std::atomic<int> executions{0};
  std::vector<std::future<Result<std::string>>> results;
  for (int i = 0; i < kCallers; ++i) {
    results.push_back(std::async(std::launch::async, [&] {
      return flights.Do("k", [&]() -> Result<std::string> {
        executions.fetch_add(1);
        WaitForWaiters(flights, "k", kCallers - 1);
        return Status::Unavailable("registry down");
      });
    }));
  }
  for (const auto& r : GetAll(results)) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kUnavailable);
    EXPECT_EQ(r.status().message(), "registry down");
  }
  EXPECT_EQ(executions.load(), 1);
  // The failure is not cached: the next caller runs the work again.
  Result<std::string> again = flights.Do("k", [&]() -> Result<std::string> {
    executions.fetch_add(1);
    return std::string("ok now");
  });
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, "ok now");
  EXPECT_EQ(executions.load(), 2);
}

TEST(SingleFlightTest, ThrowingLeaderGivesWaitersAnErrorNotAHang) {
  Flights flights;
  std::atomic<int> leader_threw{0};
  std::vector<std::future<Result<std::string>>> results;
  for (int i = 0; i < kCallers; ++i) {
    results.push_back(std::async(std::launch::async, [&]() -> Result<std::string> {
      try {
        return flights.Do("k", [&]() -> Result<std::string> {
          WaitForWaiters(flights, "k", kCallers - 1);
          throw std::runtime_error("decoder blew up");
        });
      } catch (const std::runtime_error& e) {
        leader_threw.fetch_add(1);
        return Status::Internal(std::string("leader: ") + e.what());
      }
    }));
  }
  int waiter_errors = 0;
  for (const auto& r : GetAll(results)) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kInternal);
    if (r.status().message().find("threw") != std::string::npos) ++waiter_errors;
  }
  // The exception reaches the leader's caller; every waiter gets kInternal.
  EXPECT_EQ(leader_threw.load(), 1);
  EXPECT_EQ(waiter_errors, kCallers - 1);
  EXPECT_EQ(flights.size(), 0u);
}

TEST(SingleFlightTest, AbandonedCallCompletesItsFlight) {
  Flights flights;
  std::future<Result<std::string>> waiter;
  {
    Flights::Call leader = flights.Join("k");
    ASSERT_TRUE(leader.leader());
    waiter = std::async(std::launch::async, [&] { return flights.Join("k").Wait(); });
    ASSERT_TRUE(WaitForWaiters(flights, "k", 1));
    // Leaves the scope without Complete: a cancelled job, an early return.
  }
  std::vector<std::future<Result<std::string>>> results;
  results.push_back(std::move(waiter));
  auto out = GetAll(results);
  ASSERT_FALSE(out[0].ok());
  EXPECT_EQ(out[0].status().code(), Code::kInternal);
  EXPECT_EQ(flights.size(), 0u);
}

TEST(SingleFlightTest, CompleteFromAnotherThreadAfterAMove) {
  Flights flights;
  Flights::Call leader = flights.Join("k");
  ASSERT_TRUE(leader.leader());
  Flights::Call second = flights.Join("k");
  ASSERT_FALSE(second.leader());
  std::thread completer([call = std::move(leader)]() mutable { call.Complete(std::string("v")); });
  Result<std::string> r = second.Wait();
  completer.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "v");
  EXPECT_TRUE(flights.Join("k").leader());  // the key is free again
}

// A result nobody waits for is neither made nor kept (a fetched unit's bytes, say); one that
// a joined caller will wait for is, even when that caller has not started waiting yet.
TEST(SingleFlightTest, AResultIsMadeOnlyForCallersThatJoined) {
  Flights flights;
  int made = 0;
  auto make = [&made] {
    ++made;
    return Result<std::string>(std::string("v"));
  };
  {
    Flights::Call alone = flights.Join("k");
    ASSERT_TRUE(alone.leader());
    alone.CompleteWith(make);
    EXPECT_FALSE(alone.leader());
    EXPECT_EQ(alone.Wait().status().code(), Code::kInternal);  // a leader has nothing to wait for
  }
  EXPECT_EQ(made, 0);

  Flights::Call leader = flights.Join("k");
  Flights::Call joined = flights.Join("k");
  ASSERT_TRUE(leader.leader());
  ASSERT_FALSE(joined.leader());
  leader.CompleteWith(make);
  EXPECT_EQ(made, 1);
  Result<std::string> r = joined.Wait();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "v");

  // Do copies its result only for waiters, and returns it to its leader either way.
  Result<std::string> done = flights.Do("k", [] { return Result<std::string>(std::string("w")); });
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(*done, "w");
  EXPECT_EQ(flights.size(), 0u);
}

}  // namespace
}  // namespace imgfs
