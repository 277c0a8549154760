// Explicit softmax solution from target-major co-occurrences (docs/internals.md):
// out[i, j] = tau * log(FT[i, j] + alpha) - shrink * log(C_i + alpha * D), C_i = sum_j FT[i, j].
#include <cmath>

#include "common.hpp"

namespace saffu {
namespace {

template <typename Out>
void explicit_solve(carray<double> FT, carray<Out> out, double alpha, double tau, double shrink,
                    int n_threads) {
  if (FT.ndim() != 2 || out.ndim() != 2 || out.shape(0) != FT.shape(0) ||
      out.shape(1) != FT.shape(1))
    throw std::invalid_argument("explicit_solve: expected FT (N, D) and out (N, D)");
  const int64_t N = FT.shape(0), D = FT.shape(1);
  const double* ft = FT.data();
  Out* o = out.mutable_data();
  py::gil_scoped_release release;
  parallel_ranges(N, effective_threads(n_threads, N), [=](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const double* row = ft + i * D;
      double column_sum = 0.0;
      for (int64_t j = 0; j < D; ++j) column_sum += row[j];
      const double normalizer = shrink * std::log(column_sum + alpha * static_cast<double>(D));
      for (int64_t j = 0; j < D; ++j)
        o[i * D + j] = static_cast<Out>(tau * std::log(row[j] + alpha) - normalizer);
    }
  });
}

template <typename Out>
void def_solve(py::module_& m) {
  m.def("explicit_solve", &explicit_solve<Out>, py::arg("FT").noconvert(),
        py::arg("out").noconvert(), py::arg("alpha"), py::arg("tau"), py::arg("shrink"),
        py::arg("n_threads"),
        "out[i, j] = tau*log(FT[i, j] + alpha) - shrink*log(C_i + alpha*D), C_i = sum_j FT[i, j].");
}

}  // namespace

void register_solve(py::module_& m) {
  def_solve<float>(m);
  def_solve<double>(m);
}

}  // namespace saffu
