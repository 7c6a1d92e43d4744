#include "util/thread_pool.h"

#include <algorithm>
#include <chrono>

namespace tunekit {

namespace {

// How long an idle thread spins before it sleeps: longer than the gaps between the parallel loops
// of a decoding step, far shorter than anything a person would notice as a busy core.
constexpr auto kSpin = std::chrono::microseconds(100);

inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins until `ready()` or kSpin has passed; whether it became ready.
template <typename Ready>
bool spin(const Ready& ready) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (unsigned i = 1;; i++) {
    if (ready()) return true;
    pause();
    if (i % 64 == 0 && std::chrono::steady_clock::now() > until) return ready();
  }
}

void chunk(size_t n, size_t parts, size_t index, size_t* begin, size_t* end) {
  const size_t base = n / parts, extra = n % parts;
  *begin = index * base + std::min(index, extra);
  *end = *begin + base + (index < extra ? 1 : 0);
}

}  // namespace

ThreadPool::ThreadPool(size_t threads) {
  threads = std::max<size_t>(1, threads);
  for (size_t i = 1; i < threads; i++) workers_.emplace_back([this, i] { work(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  start_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t, size_t, size_t)>& body) {
  if (n == 0) return;
  if (workers_.empty() || n == 1) {
    body(0, n, 0);
    return;
  }
  std::lock_guard<std::mutex> call(call_mutex_);
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    body_ = &body;
    n_ = n;
    pending_.store(workers_.size(), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);  // publishes body_ and n_ to spinning workers
    wake = sleeping_ > 0;
  }
  if (wake) start_.notify_all();
  size_t begin, end;
  chunk(n, size(), 0, &begin, &end);
  std::exception_ptr own;
  try {
    if (begin < end) body(begin, end, 0);
  } catch (...) {
    own = std::current_exception();
  }
  const auto finished = [this] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!spin(finished)) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, finished);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  body_ = nullptr;
  std::exception_ptr error = own ? own : error_;
  error_ = nullptr;
  if (error) std::rethrow_exception(error);
}

void ThreadPool::work(size_t index) {
  size_t seen = 0;
  const auto called = [&] { return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; };
  for (;;) {
    if (!spin(called)) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleeping_++;
      start_.wait(lock, called);
      sleeping_--;
    }
    if (stop_.load(std::memory_order_acquire)) return;
    const std::function<void(size_t, size_t, size_t)>* body;
    size_t n;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      seen = generation_.load(std::memory_order_relaxed);
      body = body_;
      n = n_;
    }
    size_t begin, end;
    chunk(n, size(), index, &begin, &end);
    std::exception_ptr error;
    try {
      if (begin < end) (*body)(begin, end, index);
    } catch (...) {
      error = std::current_exception();
    }
    if (error) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = error;
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);  // the caller checks pending_ under it before it sleeps
      done_.notify_one();
    }
  }
}

}  // namespace tunekit
