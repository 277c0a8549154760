// Output-layer scoring: the log-normalizer of each row of logits, fused in one pass per row
// (no (rows x V) temporaries beyond the logits themselves). Contract: docs/internals.md.
#include "saffu/output.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "saffu/check.hpp"
#include "saffu/parallel.hpp"
#include "saffu/vecmath.hpp"

namespace saffu {
namespace {

// log Σ_j exp(s·x_j + b_j) for one row, s·x_j rounded to float before b_j is added (as a
// float32 multiply followed by an add; the build has -ffp-contract=off, so no fused
// multiply-add); scratch holds V floats. A row holding NaN, or whose maximum is not finite,
// gives NaN (as the NumPy reference does).
SAFFU_AVX2_CLONES double row_logsumexp(const float* x, float s, const float* b, float* scratch,
                                       int64_t V) {
  uint32_t nan = 0;  // integer test of the bits: vectorizes, unlike std::isnan
  for (int64_t j = 0; j < V; ++j) {
    const float scaled = x[j] * s;
    scratch[j] = scaled + b[j];
    uint32_t bits;
    std::memcpy(&bits, scratch + j, sizeof bits);
    nan |= static_cast<uint32_t>((bits & 0x7fffffffu) > 0x7f800000u);
  }
  const float top = maximum(scratch, V);
  if (nan || !std::isfinite(top)) return std::numeric_limits<double>::quiet_NaN();
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= V; j += 8)
    for (int l = 0; l < 8; ++l) lane[l] += exp_nonpositive(scratch[j + l] - top);
  double total = total_of_lanes(lane);
  for (; j < V; ++j) total += exp_nonpositive(scratch[j] - top);
  return static_cast<double>(top) + std::log(total);
}

}  // namespace

void logsumexp_rows_scaled(const float* logits, int64_t m, int64_t V, float scale, const float* bias,
                           double* out, int n_threads) {
  require(V >= 1, "logsumexp_rows: expected logits (m, V >= 1), bias (V,), out (m,)");
  parallel_ranges(m, effective_threads(n_threads, m), [=](int, int64_t begin, int64_t end) {
    std::vector<float> scratch(V);
    for (int64_t i = begin; i < end; ++i)
      out[i] = row_logsumexp(logits + i * V, scale, bias, scratch.data(), V);
  });
}

void logsumexp_rows(const float* logits, int64_t m, int64_t V, const float* bias, double* out,
                    int n_threads) {
  logsumexp_rows_scaled(logits, m, V, 1.0f, bias, out, n_threads);  // 1·x is x, bit for bit
}

}  // namespace saffu
