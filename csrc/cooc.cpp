// Co-occurrence accumulation with one-hot targets into a target-major matrix FT (N, D):
// FT[targets[m], :] += x_m for every example m.
//
// Strategy: a stable counting sort groups the examples by target, then each thread owns a
// contiguous range of target rows (balanced by example counts) and adds its examples row by
// row. Rows are disjoint between threads (no atomics, no per-thread copies), a row stays in L1
// while its examples are added, and every row receives its examples in their original order,
// so the result is the same for every thread count and equals the sequential sum.
#include "common.hpp"

namespace saffu {
namespace {

// Examples grouped by target: order[offsets[t] : offsets[t + 1]] lists, in their original
// order, the examples whose target is t.
struct TargetGroups {
  std::vector<int64_t> offsets;  // (N + 1,)
  std::vector<int64_t> order;    // (n,)
};

TargetGroups group_by_target(const int64_t* targets, int64_t n, int64_t n_targets) {
  TargetGroups groups;
  groups.offsets.assign(n_targets + 1, 0);
  for (int64_t m = 0; m < n; ++m) {
    if (targets[m] < 0 || targets[m] >= n_targets)
      throw std::invalid_argument("targets[" + std::to_string(m) + "] is out of range");
    ++groups.offsets[targets[m] + 1];
  }
  for (int64_t t = 0; t < n_targets; ++t) groups.offsets[t + 1] += groups.offsets[t];
  std::vector<int64_t> cursor(groups.offsets.begin(), groups.offsets.end() - 1);
  groups.order.resize(n);
  for (int64_t m = 0; m < n; ++m) groups.order[cursor[targets[m]]++] = m;
  return groups;
}

// Run add(target, example) for every example, grouped by target, on up to n_threads threads.
template <typename AddExample>
void accumulate_by_target(const int64_t* targets, int64_t n, int64_t n_targets, int n_threads,
                          AddExample add) {
  if (n == 0) return;
  const TargetGroups groups = group_by_target(targets, n, n_targets);
  const int parts = effective_threads(n_threads, n);
  // Part p owns target rows [first_row[p], first_row[p + 1]), about n / parts examples.
  std::vector<int64_t> first_row(parts + 1, n_targets);
  for (int p = 0; p < parts; ++p) {
    const auto it = std::lower_bound(groups.offsets.begin(), groups.offsets.end(), n * p / parts);
    first_row[p] = it - groups.offsets.begin();
  }
  parallel_ranges(parts, parts, [&](int, int64_t begin, int64_t end) {
    for (int64_t part = begin; part < end; ++part)
      for (int64_t t = first_row[part]; t < first_row[part + 1]; ++t)
        for (int64_t s = groups.offsets[t]; s < groups.offsets[t + 1]; ++s) add(t, groups.order[s]);
  });
}

template <typename T>
inline void add_row(double* __restrict dst, const T* __restrict src, int64_t len) {
  for (int64_t j = 0; j < len; ++j) dst[j] += static_cast<double>(src[j]);
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
  accumulate_by_target(tg, n, FT.shape(0), n_threads,
                       [=](int64_t t, int64_t m) { add_row(ft + t * D, x + m * D, D); });
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
  accumulate_by_target(tg, n, FT.shape(0), n_threads, [=](int64_t t, int64_t m) {
    double* __restrict row = ft + t * D;
    for (int64_t p = ptr[m]; p < ptr[m + 1]; ++p) row[idx[p]] += static_cast<double>(w[p]);
  });
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
