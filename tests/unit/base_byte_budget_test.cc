// ByteBudget: bytes held at once never exceed the limit, an oversized request runs alone, and
// waiters are served in arrival order.
#include "base/byte_budget.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace imgfs {
namespace {

// Polls `done` until it holds (10 s at most): the blocked Acquire under test has no hook.
template <typename Fn>
bool WaitFor(Fn done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST(ByteBudgetTest, ManyThreadsNeverHoldMoreThanTheLimit) {
  constexpr uint64_t kLimit = 1000;
  ByteBudget budget(kLimit);
  std::atomic<uint64_t> held{0};
  std::atomic<uint64_t> most{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 200; ++i) {
        const uint64_t want = 1 + rng() % 400;
        ByteBudget::Lease lease = budget.Acquire(want);
        EXPECT_EQ(lease.bytes(), want);
        const uint64_t now = held.fetch_add(want) + want;
        uint64_t seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::yield();
        held.fetch_sub(want);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(most.load(), kLimit);
  EXPECT_LE(budget.peak(), kLimit);
  EXPECT_EQ(budget.used(), 0u);
}

TEST(ByteBudgetTest, ARequestLargerThanTheBudgetRunsAlone) {
  ByteBudget budget(100);
  ByteBudget::Lease small = budget.Acquire(10);
  std::atomic<bool> granted{false};
  std::thread big([&] {
    ByteBudget::Lease lease = budget.Acquire(1000);
    EXPECT_EQ(lease.bytes(), 100u);  // it counts as the whole budget
    EXPECT_EQ(budget.used(), 100u);
    granted = true;
  });
  ASSERT_TRUE(WaitFor([&] { return budget.waiting() == 1; }));
  EXPECT_FALSE(granted.load());
  small.Release();
  big.join();
  EXPECT_TRUE(granted.load());
  EXPECT_EQ(budget.used(), 0u);
  EXPECT_EQ(budget.peak(), 100u);
}

TEST(ByteBudgetTest, WaitersAreServedInArrivalOrder) {
  ByteBudget budget(100);
  ByteBudget::Lease first = budget.Acquire(60);
  std::vector<int> order;
  std::mutex order_mu;
  auto take = [&](int who, uint64_t bytes) {
    ByteBudget::Lease lease = budget.Acquire(bytes);
    std::lock_guard<std::mutex> lock(order_mu);
    order.push_back(who);
  };
  // 80 does not fit beside 60 and waits; 30 would fit, but it came later. 30 does not fit
  // beside 80 either, so the second takes its bytes only once the first has noted its turn
  // and let go (beside 80 a 10 would be granted at once, and the two would race to note it).
  std::thread large([&] { take(1, 80); });
  ASSERT_TRUE(WaitFor([&] { return budget.waiting() == 1; }));
  std::thread small([&] { take(2, 30); });
  ASSERT_TRUE(WaitFor([&] { return budget.waiting() == 2; }));
  {
    std::lock_guard<std::mutex> lock(order_mu);
    EXPECT_TRUE(order.empty());
  }
  first.Release();
  large.join();
  small.join();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(ByteBudgetTest, MovedLeasesReleaseOnce) {
  ByteBudget budget(100);
  ByteBudget::Lease a = budget.Acquire(30);
  ByteBudget::Lease b = std::move(a);
  EXPECT_EQ(a.bytes(), 0u);
  EXPECT_EQ(b.bytes(), 30u);
  a.Release();
  EXPECT_EQ(budget.used(), 30u);
  ByteBudget::Lease c = budget.Acquire(20);
  c = std::move(b);  // c's 20 go back, b's 30 stay
  EXPECT_EQ(budget.used(), 30u);
  c.Release();
  c.Release();
  EXPECT_EQ(budget.used(), 0u);
}

}  // namespace
}  // namespace imgfs
