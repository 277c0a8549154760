// Explicit softmax solution from target-major co-occurrences (csrc/solve.cpp):
// out[i, j] = tau * log(FT[i, j] + alpha) - shrink * log(C_i + alpha * D), C_i = sum_j FT[i, j].
// FT and out are (N, D), C-contiguous, and must not overlap.
#pragma once

#include <cstdint>

namespace saffu {

void explicit_solve(const double* FT, int64_t N, int64_t D, float* out, double alpha, double tau,
                    double shrink, int n_threads);
void explicit_solve(const double* FT, int64_t N, int64_t D, double* out, double alpha, double tau,
                    double shrink, int n_threads);

}  // namespace saffu
