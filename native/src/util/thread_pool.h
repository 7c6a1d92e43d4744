// A fixed pool of worker threads for data-parallel loops. Each index range goes to one thread and
// is computed in a fixed order, so results do not depend on scheduling (only on the thread count,
// and not even on that for the loops the engine runs: every output element is computed by one thread).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tunekit {

class ThreadPool {
 public:
  explicit ThreadPool(size_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t size() const { return workers_.size() + 1; }

  // Calls body(begin, end, thread) over [0, n) split into contiguous chunks, one per thread (the
  // calling thread takes the first). Concurrent callers are served one after another. An exception
  // thrown by a body (std::bad_alloc, say) is rethrown here once every chunk has ended.
  void parallel_for(size_t n, const std::function<void(size_t, size_t, size_t)>& body);

 private:
  void work(size_t index);

  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // one parallel_for at a time
  // Workers and the caller spin a little (kSpin) before they sleep: the engine calls parallel_for
  // hundreds of times per decoded token, microseconds apart, and waking a sleeping thread costs more.
  std::mutex mutex_;
  std::condition_variable start_;
  std::condition_variable done_;
  const std::function<void(size_t, size_t, size_t)>* body_ = nullptr;
  size_t n_ = 0;
  std::atomic<size_t> generation_{0};
  std::atomic<size_t> pending_{0};
  size_t sleeping_ = 0;  // workers waiting on start_ (under mutex_)
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;  // the first exception of the current call
};

}  // namespace tunekit
