// BufferPool: a buffer given back is the next Take's, the kept bytes and buffers never pass
// their bounds, small or much larger buffers are not handed out, and buffers taken by many
// threads at once are never shared.
#include "base/buffer_pool.h"

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace imgfs {
namespace {

constexpr size_t kMiB = 1 << 20;

TEST(BufferPoolTest, TakeReusesAGivenBuffer) {
  BufferPool pool(16 * kMiB, 8);
  std::string a = pool.Take(kMiB);
  ASSERT_EQ(a.size(), kMiB);
  const char* data = a.data();
  pool.Give(std::move(a));
  EXPECT_EQ(pool.kept_buffers(), 1u);
  std::string b = pool.Take(kMiB - 100);  // a slightly smaller unit fits the same buffer
  EXPECT_EQ(b.size(), kMiB - 100);
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(pool.reuses(), 1u);
  EXPECT_EQ(pool.kept_buffers(), 0u);
  EXPECT_EQ(pool.kept_bytes(), 0u);
}

TEST(BufferPoolTest, UnitsOfNearlyOneSizeShareBuffers) {
  BufferPool pool(16 * kMiB, 8);
  std::string decoded = pool.Take(4 * kMiB);
  EXPECT_EQ(decoded.capacity() % BufferPool::kRoundBytes, 0u);
  const char* data = decoded.data();
  pool.Give(std::move(decoded));
  std::string member = pool.Take(4 * kMiB + 1303);  // its gzip member, a little longer
  EXPECT_EQ(member.data(), data);
  EXPECT_EQ(member.size(), 4 * kMiB + 1303);
}

TEST(BufferPoolTest, SharedBufferComesBackWhenTheLastReferenceGoes) {
  BufferPool pool(16 * kMiB, 8);
  std::string a = pool.Take(2 * kMiB);
  const char* data = a.data();
  std::shared_ptr<const std::string> shared = pool.Share(std::move(a));
  std::shared_ptr<const std::string> copy = shared;
  shared.reset();
  EXPECT_EQ(pool.kept_buffers(), 0u);  // still referenced
  copy.reset();
  EXPECT_EQ(pool.kept_buffers(), 1u);
  EXPECT_EQ(pool.Take(2 * kMiB).data(), data);
}

TEST(BufferPoolTest, KeepsNothingPastItsBounds) {
  BufferPool pool(4 * kMiB, 3);
  for (int i = 0; i < 6; ++i) pool.Give(std::string(kMiB, 'x'));
  EXPECT_EQ(pool.kept_buffers(), 3u);  // the count bound
  EXPECT_LE(pool.kept_bytes(), 4 * kMiB);
  BufferPool small(3 * kMiB, 8);
  for (int i = 0; i < 6; ++i) small.Give(std::string(kMiB, 'x'));
  EXPECT_LE(small.kept_bytes(), 3 * kMiB);  // the byte bound
  EXPECT_GE(small.kept_buffers(), 2u);
  small.Give(std::string(8 * kMiB, 'x'));  // larger than the whole bound
  EXPECT_LE(small.kept_bytes(), 3 * kMiB);
}

TEST(BufferPoolTest, LargerBuffersDisplaceSmallerOnes) {
  BufferPool pool(4 * kMiB, 2);
  pool.Give(std::string(BufferPool::kMinBytes, 'x'));
  pool.Give(std::string(BufferPool::kMinBytes, 'x'));
  pool.Give(std::string(2 * kMiB, 'x'));
  ASSERT_EQ(pool.kept_buffers(), 2u);
  std::string big = pool.Take(2 * kMiB);
  EXPECT_EQ(pool.reuses(), 1u) << "the 2 MiB buffer was not kept";
}

TEST(BufferPoolTest, SmallOrMuchLargerBuffersAreNotHandedOut) {
  BufferPool pool(64 * kMiB, 8);
  pool.Give(std::string(1000, 'x'));
  EXPECT_EQ(pool.kept_buffers(), 0u);  // below kMinBytes: malloc's business
  pool.Give(std::string(8 * kMiB, 'x'));
  ASSERT_EQ(pool.kept_buffers(), 1u);
  std::string small = pool.Take(kMiB);  // would pin 8 MiB for a 1 MiB unit
  EXPECT_EQ(pool.reuses(), 0u);
  EXPECT_EQ(pool.kept_buffers(), 1u);
  std::string half = pool.Take(4 * kMiB);  // would pin twice its size
  EXPECT_EQ(pool.reuses(), 0u);
  std::string near = pool.Take(8 * kMiB - 100 * 1024);  // within an eighth: reused
  EXPECT_EQ(pool.reuses(), 1u);
  EXPECT_EQ(near.size(), 8 * kMiB - 100 * 1024);
  EXPECT_LE(near.capacity() - near.size(), BufferPool::MaxSlack(near.size()));
}

TEST(BufferPoolTest, ManyThreadsNeverShareABuffer) {
  constexpr size_t kSize = BufferPool::kMinBytes;
  BufferPool pool(4 * kSize, 4);
  std::atomic<int> clobbered{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        std::string b = pool.Take(kSize + static_cast<size_t>(i % 3));
        const char mark = static_cast<char>('a' + t);
        for (size_t k = 0; k < b.size(); k += 4096) b[k] = mark;
        std::this_thread::yield();
        for (size_t k = 0; k < b.size(); k += 4096) {
          if (b[k] != mark) ++clobbered;
        }
        if (i % 2 == 0) {
          pool.Give(std::move(b));
        } else {
          std::shared_ptr<const std::string> s = pool.Share(std::move(b));
        }
        if (pool.kept_bytes() > 4 * kSize || pool.kept_buffers() > 4) ++clobbered;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(clobbered.load(), 0);
  EXPECT_GT(pool.reuses(), 0u);
  EXPECT_LE(pool.kept_buffers(), 4u);
}

}  // namespace
}  // namespace imgfs
