#include "util/thread_pool.h"

#include <algorithm>

namespace tunekit {

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

static void chunk(size_t n, size_t parts, size_t index, size_t* begin, size_t* end) {
  const size_t base = n / parts, extra = n % parts;
  *begin = index * base + std::min(index, extra);
  *end = *begin + base + (index < extra ? 1 : 0);
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t, size_t, size_t)>& body) {
  if (n == 0) return;
  if (workers_.empty() || n == 1) {
    body(0, n, 0);
    return;
  }
  std::lock_guard<std::mutex> call(call_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    body_ = &body;
    n_ = n;
    pending_ = workers_.size();
    generation_++;
  }
  start_.notify_all();
  size_t begin, end;
  chunk(n, size(), 0, &begin, &end);
  std::exception_ptr own;
  try {
    if (begin < end) body(begin, end, 0);
  } catch (...) {
    own = std::current_exception();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return pending_ == 0; });
  body_ = nullptr;
  std::exception_ptr error = own ? own : error_;
  error_ = nullptr;
  if (error) std::rethrow_exception(error);
}

void ThreadPool::work(size_t index) {
  size_t seen = 0;
  for (;;) {
    const std::function<void(size_t, size_t, size_t)>* body;
    size_t n;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
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
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (error && !error_) error_ = error;
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

}  // namespace tunekit
