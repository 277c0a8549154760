// Output-layer scoring (csrc/output.cpp; contract: docs/internals.md, "Output layer").
#pragma once

#include <cstdint>

namespace saffu {

// out[i] = log(sum_j exp(logits[i, j] + bias[j])) for i < m; logits (m, V) with V >= 1 (else
// std::invalid_argument), bias (V,), out (m,). A row holding NaN, or whose maximum is not
// finite, gives NaN.
void logsumexp_rows(const float* logits, int64_t m, int64_t V, const float* bias, double* out,
                    int n_threads);

// The same for the rows of scale * logits: out[i] = log(sum_j exp(fl(scale * logits[i, j]) +
// bias[j])), the product rounded to float first (as NumPy's float32 multiply), in one pass:
// no scaled copy of the logits.
void logsumexp_rows_scaled(const float* logits, int64_t m, int64_t V, float scale, const float* bias,
                           double* out, int n_threads);

}  // namespace saffu
