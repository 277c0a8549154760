// Explicit softmax solution from target-major co-occurrences (docs/internals.md):
// out[i, j] = tau * log(FT[i, j] + alpha) - shrink * log(C_i + alpha * D), C_i = sum_j FT[i, j].
#include "saffu/solve.hpp"

#include <cmath>

#include "saffu/parallel.hpp"

namespace saffu {
namespace {

template <typename Out>
void solve(const double* ft, int64_t N, int64_t D, Out* o, double alpha, double tau, double shrink,
           int n_threads) {
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

}  // namespace

void explicit_solve(const double* FT, int64_t N, int64_t D, float* out, double alpha, double tau,
                    double shrink, int n_threads) {
  solve(FT, N, D, out, alpha, tau, shrink, n_threads);
}

void explicit_solve(const double* FT, int64_t N, int64_t D, double* out, double alpha, double tau,
                    double shrink, int n_threads) {
  solve(FT, N, D, out, alpha, tau, shrink, n_threads);
}

}  // namespace saffu
