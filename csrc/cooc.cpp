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
#include "common.hpp"
#include "vecmath.hpp"

namespace saffu {
namespace {

constexpr int64_t kPrefetchAhead = 2;  // examples ahead of the one being added

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
void cooc_dense_onehot(carray<double> FT, carray<T> X, carray<int64_t> targets, int n_threads) {
  if (FT.ndim() != 2 || X.ndim() != 2 || targets.ndim() != 1 || X.shape(1) != FT.shape(1) ||
      targets.shape(0) != X.shape(0))
    throw std::invalid_argument("cooc_dense_onehot: expected FT (N, D), X (n, D), targets (n,)");
  const int64_t n = X.shape(0), D = X.shape(1);
  double* ft = FT.mutable_data();
  const T* x = X.data();
  const int64_t* tg = targets.data();
  py::gil_scoped_release release;
  const auto offsets = target_offsets(tg, n, FT.shape(0));
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

template <typename T>
void cooc_sparse_onehot(carray<double> FT, carray<int64_t> indptr, carray<int64_t> indices,
                        carray<T> weights, carray<int64_t> targets, int n_threads) {
  if (FT.ndim() != 2 || indptr.ndim() != 1 || indices.ndim() != 1 || weights.ndim() != 1 ||
      targets.ndim() != 1 || indptr.shape(0) != targets.shape(0) + 1 ||
      weights.shape(0) != indices.shape(0))
    throw std::invalid_argument(
        "cooc_sparse_onehot: expected FT (N, D), indptr (n + 1,), indices (nnz,), weights (nnz,), "
        "targets (n,)");
  const int64_t n = targets.shape(0), D = FT.shape(1);
  const int64_t* ptr = indptr.data();
  if (ptr[0] != 0 || ptr[n] != indices.shape(0))
    throw std::invalid_argument("cooc_sparse_onehot: indptr must run from 0 to nnz");
  double* ft = FT.mutable_data();
  const int64_t* idx = indices.data();
  const T* w = weights.data();
  const int64_t* tg = targets.data();
  py::gil_scoped_release release;
  const auto offsets = target_offsets(tg, n, FT.shape(0));
  scan_by_target(
      tg, n, balanced_first_rows(offsets, effective_threads(n_threads, n)),
      [=](int64_t t, int64_t m) {
        double* __restrict row = ft + t * D;
        for (int64_t p = ptr[m]; p < ptr[m + 1]; ++p) row[idx[p]] += static_cast<double>(w[p]);
      },
      [=](int64_t t) { prefetch<1>(ft + t * D, D * 8); });
}

template <typename T>
void def_cooc(py::module_& m) {
  m.def("cooc_dense_onehot", &cooc_dense_onehot<T>, py::arg("FT").noconvert(),
        py::arg("X").noconvert(), py::arg("targets").noconvert(), py::arg("n_threads"),
        "FT[targets[m], :] += X[m, :] for every row m (FT (N, D) f64, X (n, D), targets (n,) i64).");
  m.def("cooc_sparse_onehot", &cooc_sparse_onehot<T>, py::arg("FT").noconvert(),
        py::arg("indptr").noconvert(), py::arg("indices").noconvert(),
        py::arg("weights").noconvert(), py::arg("targets").noconvert(), py::arg("n_threads"),
        "FT[targets[m], indices[p]] += weights[p] for p in [indptr[m], indptr[m + 1]) (CSR rows).");
}

}  // namespace

void register_cooc(py::module_& m) {
  def_cooc<float>(m);
  def_cooc<double>(m);
}

}  // namespace saffu
