// Co-occurrence accumulation with one-hot targets into a target-major matrix FT (N, D):
// FT[targets[m], :] += x_m for every example m.
//
// Target-partitioned: each part (thread) owns a contiguous range of target rows holding about
// n / parts examples, so threads never write the same row (no atomics, no per-thread copies).
// Every row receives its examples in their original order, so the result is the same for every
// thread count and equals the sequential sum (and the NumPy reference, np.add.at).
//
// Two ways to visit a part's examples (measurements: bench/RESULTS.md, "Kernels"):
// - scan: stream all examples in order and add those whose target the part owns. Inputs are
//   read sequentially and the target row a few examples ahead is prefetched; best on one
//   thread, and for sparse rows at any thread count.
// - grouped: a stable counting sort groups the examples by target; the part adds them row by
//   row (the row stays in L1) and prefetches the input rows it will read next. Best for dense
//   rows on several threads, where the scan makes every core stream every input row.
#include "saffu/cooc.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "saffu/check.hpp"
#include "saffu/parallel.hpp"
#include "saffu/vecmath.hpp"

namespace saffu {
namespace {

constexpr int64_t kPrefetchAhead = 2;  // examples ahead of the one being added
constexpr int64_t kSparseRowPrefetchBytes = 4096;  // widest target row the sparse kernel prefetches

// Hint the cache to fetch [data, data + bytes), for reading (kWrite = 0) or updating (1).
template <int kWrite>
inline void prefetch(const void* data, int64_t bytes) {
#if defined(__GNUC__)
  const char* p = static_cast<const char*>(data);
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, kWrite);
#else
  (void)data;
  (void)bytes;
#endif
}

// offsets[t] = number of examples with a target below t (N + 1 entries); validates targets.
std::vector<int64_t> target_offsets(const int64_t* targets, int64_t n, int64_t n_targets) {
  std::vector<int64_t> offsets(n_targets + 1, 0);
  for (int64_t m = 0; m < n; ++m) {
    if (targets[m] < 0 || targets[m] >= n_targets)
      throw std::invalid_argument("targets[" + std::to_string(m) + "] is out of range");
    ++offsets[targets[m] + 1];
  }
  for (int64_t t = 0; t < n_targets; ++t) offsets[t + 1] += offsets[t];
  return offsets;
}

// Part p owns target rows [first_row[p], first_row[p + 1]), about n / parts examples.
std::vector<int64_t> balanced_first_rows(const std::vector<int64_t>& offsets, int parts) {
  const int64_t n = offsets.back();
  std::vector<int64_t> first_row(parts + 1, static_cast<int64_t>(offsets.size()) - 1);
  for (int p = 0; p < parts; ++p)
    first_row[p] = std::lower_bound(offsets.begin(), offsets.end(), n * p / parts) - offsets.begin();
  return first_row;
}

// Run fn(first_row, end_row) for every part, each on its own thread.
template <typename PartFn>
void for_each_part(const std::vector<int64_t>& first_row, PartFn fn) {
  const int parts = static_cast<int>(first_row.size()) - 1;
  parallel_ranges(parts, parts, [&](int, int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) fn(first_row[p], first_row[p + 1]);
  });
}

// add(t, m) for every example m, in order, on `parts` threads (scan visit);
// prefetch_row(t) is called a few examples before add(t, .).
template <typename AddExample, typename PrefetchRow>
void scan_by_target(const int64_t* targets, int64_t n, const std::vector<int64_t>& first_row,
                    AddExample add, PrefetchRow prefetch_row) {
  for_each_part(first_row, [&](int64_t row_begin, int64_t row_end) {
    const auto owned = [=](int64_t t) { return t >= row_begin && t < row_end; };
    for (int64_t m = 0; m < n; ++m) {
      if (m + kPrefetchAhead < n && owned(targets[m + kPrefetchAhead]))
        prefetch_row(targets[m + kPrefetchAhead]);
      if (owned(targets[m])) add(targets[m], m);
    }
  });
}

// add(t, m) for every example m, grouped by target, in order inside a target (grouped visit);
// prefetch(m) is called a few examples before add(., m).
template <typename AddExample, typename Prefetch>
void group_by_target(const int64_t* targets, int64_t n, const std::vector<int64_t>& offsets,
                     const std::vector<int64_t>& first_row, AddExample add, Prefetch prefetch) {
  std::vector<int64_t> cursor(offsets.begin(), offsets.end() - 1);
  std::vector<int64_t> order(n);
  for (int64_t m = 0; m < n; ++m) order[cursor[targets[m]]++] = m;
  for_each_part(first_row, [&](int64_t row_begin, int64_t row_end) {
    const int64_t stop = offsets[row_end];
    for (int64_t t = row_begin; t < row_end; ++t)
      for (int64_t s = offsets[t]; s < offsets[t + 1]; ++s) {
        if (s + kPrefetchAhead < stop) prefetch(order[s + kPrefetchAhead]);
        add(t, order[s]);
      }
  });
}

SAFFU_AVX2_CLONES void add_row(double* __restrict dst, const float* __restrict src, int64_t len) {
  for (int64_t j = 0; j < len; ++j) dst[j] += static_cast<double>(src[j]);
}

SAFFU_AVX2_CLONES void add_row(double* __restrict dst, const double* __restrict src, int64_t len) {
  for (int64_t j = 0; j < len; ++j) dst[j] += src[j];
}

template <typename T>
void dense_onehot(double* ft, int64_t N, int64_t D, const T* x, const int64_t* tg, int64_t n,
                  int n_threads) {
  const auto offsets = target_offsets(tg, n, N);
  const int parts = effective_threads(n_threads, n);
  const auto first_row = balanced_first_rows(offsets, parts);
  const auto add = [=](int64_t t, int64_t m) { add_row(ft + t * D, x + m * D, D); };
  if (parts == 1)
    scan_by_target(tg, n, first_row, add, [=](int64_t t) { prefetch<1>(ft + t * D, D * 8); });
  else
    group_by_target(tg, n, offsets, first_row, add, [=](int64_t m) {
      prefetch<0>(x + m * D, D * static_cast<int64_t>(sizeof(T)));
    });
}

// The CSR rows must stay inside indices and weights: indptr non-decreasing from 0 to nnz.
void check_indptr(const int64_t* ptr, int64_t n, int64_t nnz) {
  require(ptr[0] == 0 && ptr[n] == nnz, "cooc_sparse_onehot: indptr must run from 0 to nnz");
  bool decreasing = false;
  for (int64_t m = 0; m < n; ++m) decreasing |= ptr[m] > ptr[m + 1];
  require(!decreasing, "cooc_sparse_onehot: indptr must be non-decreasing");
}

template <typename T>
void sparse_onehot(double* ft, int64_t N, int64_t D, const int64_t* ptr, const int64_t* idx,
                   const T* w, int64_t nnz, const int64_t* tg, int64_t n, int n_threads) {
  check_indptr(ptr, n, nnz);
  const auto offsets = target_offsets(tg, n, N);
  scan_by_target(
      tg, n, balanced_first_rows(offsets, effective_threads(n_threads, n)),
      [=](int64_t t, int64_t m) {
        double* __restrict row = ft + t * D;
        for (int64_t p = ptr[m]; p < ptr[m + 1]; ++p) row[idx[p]] += static_cast<double>(w[p]);
      },
      // Prefetching the whole target row pays only while it is short: a wide row (e.g. the
      // output layer's skip columns, 8,192 wide with 1-2 nonzeros per example) would stream
      // 64 KB per example for a few 8-byte updates.
      [=](int64_t t) {
        if (D * 8 <= kSparseRowPrefetchBytes) prefetch<1>(ft + t * D, D * 8);
      });
}

}  // namespace

void cooc_dense_onehot(double* FT, int64_t N, int64_t D, const float* X, const int64_t* targets,
                       int64_t n, int n_threads) {
  dense_onehot(FT, N, D, X, targets, n, n_threads);
}

void cooc_dense_onehot(double* FT, int64_t N, int64_t D, const double* X, const int64_t* targets,
                       int64_t n, int n_threads) {
  dense_onehot(FT, N, D, X, targets, n, n_threads);
}

void cooc_sparse_onehot(double* FT, int64_t N, int64_t D, const int64_t* indptr,
                        const int64_t* indices, const float* weights, int64_t nnz,
                        const int64_t* targets, int64_t n, int n_threads) {
  sparse_onehot(FT, N, D, indptr, indices, weights, nnz, targets, n, n_threads);
}

void cooc_sparse_onehot(double* FT, int64_t N, int64_t D, const int64_t* indptr,
                        const int64_t* indices, const double* weights, int64_t nnz,
                        const int64_t* targets, int64_t n, int n_threads) {
  sparse_onehot(FT, N, D, indptr, indices, weights, nnz, targets, n, n_threads);
}

}  // namespace saffu
