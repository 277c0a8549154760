// Co-occurrence accumulation with one-hot targets (csrc/cooc.cpp; contracts: docs/internals.md).
// Arrays are C-contiguous and row-major; FT (N, D) float64 is target-major and updated in place.
// Results are bitwise the same for every thread count. A target out of range, or an indptr
// that is not non-decreasing from 0 to nnz, throws std::invalid_argument before anything is
// written. The column indices of cooc_sparse_onehot are the caller's to check (saffu.kernels
// does): a check in the loop would cost a quarter of the kernel's time.
#pragma once

#include <cstdint>

namespace saffu {

// FT[targets[m], :] += X[m, :] for m < n; X (n, D), targets (n,) in [0, N).
void cooc_dense_onehot(double* FT, int64_t N, int64_t D, const float* X, const int64_t* targets,
                       int64_t n, int n_threads);
void cooc_dense_onehot(double* FT, int64_t N, int64_t D, const double* X, const int64_t* targets,
                       int64_t n, int n_threads);

// CSR rows: FT[targets[m], indices[p]] += weights[p] for p in [indptr[m], indptr[m + 1]), m < n.
// indptr (n + 1,) non-decreasing from 0 to nnz; indices (nnz,) in [0, D) (not checked);
// weights (nnz,); targets (n,) in [0, N).
void cooc_sparse_onehot(double* FT, int64_t N, int64_t D, const int64_t* indptr,
                        const int64_t* indices, const float* weights, int64_t nnz,
                        const int64_t* targets, int64_t n, int n_threads);
void cooc_sparse_onehot(double* FT, int64_t N, int64_t D, const int64_t* indptr,
                        const int64_t* indices, const double* weights, int64_t nnz,
                        const int64_t* targets, int64_t n, int n_threads);

}  // namespace saffu
