// Thread partitioning shared by the kernels: static contiguous ranges, so results depend only on
// the inputs and the thread count. Plain C++17 (no Python).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace saffu {

// Split [0, n) into `parts` contiguous ranges; range i is [bounds[i], bounds[i+1]).
inline std::vector<int64_t> split_range(int64_t n, int parts) {
  parts = std::max(1, parts);
  std::vector<int64_t> bounds(parts + 1);
  for (int i = 0; i <= parts; ++i) bounds[i] = n * i / parts;
  return bounds;
}

// Run fn(part, begin, end) on `parts` threads over a static partition of [0, n).
// Static partitions make results deterministic for a fixed thread count. An exception thrown
// inside a worker (std::bad_alloc, say) is caught there and rethrown here after every worker
// has joined, so it reaches the caller (Python: MemoryError, ValueError) instead of aborting.
template <typename Fn>
void parallel_ranges(int64_t n, int parts, Fn fn) {
  parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(parts, n)));
  auto bounds = split_range(n, parts);
  if (parts == 1) {
    fn(0, bounds[0], bounds[1]);
    return;
  }
  std::vector<std::exception_ptr> errors(parts);
  std::vector<std::thread> workers;
  workers.reserve(parts);
  for (int p = 0; p < parts; ++p)
    workers.emplace_back([&, p] {
      try {
        fn(p, bounds[p], bounds[p + 1]);
      } catch (...) {
        errors[p] = std::current_exception();
      }
    });
  for (auto& w : workers) w.join();
  for (const auto& error : errors)
    if (error) std::rethrow_exception(error);
}

// The thread count for `work` independent items: n_threads, at most one per item, at least 1.
inline int effective_threads(int n_threads, int64_t work) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n_threads, work)));
}

}  // namespace saffu
