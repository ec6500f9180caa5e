// The process-wide kernel thread count, and what a child created by fork() inherits.
#include "gradkit/parallel.h"

#include <pthread.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <thread>

namespace gk {
namespace {

int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

std::atomic<int> g_threads{default_threads()};
std::atomic<bool> g_forked{false};

// OpenMP's thread pool does not survive fork(): the child has only the forking thread, and
// libgomp's next parallel region waits forever for the parent's workers. As PyTorch does
// for its pools, the child is marked and runs every kernel on its calling thread (all
// parallel regions go through threads_for, which then returns 1).
void mark_forked_child() {
  g_forked.store(true, std::memory_order_relaxed);
  g_threads.store(1, std::memory_order_relaxed);
}

const int g_atfork_registered = pthread_atfork(nullptr, nullptr, mark_forked_child);

}  // namespace

int get_num_threads() { return g_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
  if (n > 1 && g_forked.load(std::memory_order_relaxed)) {
    throw std::runtime_error(
        "set_num_threads: n: this process was created by fork(), where kernels run on one thread "
        "(OpenMP's thread pool does not survive fork); got " + std::to_string(n) +
        ". Use the 'spawn' or 'forkserver' start method for multi-threaded workers");
  }
  g_threads.store(n, std::memory_order_relaxed);
}

}  // namespace gk
