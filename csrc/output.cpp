// Output-layer scoring: the log-normalizer of each row of logits, fused in one pass per row
// (no (rows x V) temporaries beyond the logits themselves). Contract: docs/internals.md.
#include <cmath>
#include <cstring>
#include <limits>

#include "common.hpp"
#include "vecmath.hpp"

namespace saffu {
namespace {

// log Σ_j exp(x_j + b_j) for one row; scratch holds V floats. A row holding NaN, or whose
// maximum is not finite, gives NaN (as the NumPy reference does).
SAFFU_AVX2_CLONES double row_logsumexp(const float* x, const float* b, float* scratch, int64_t V) {
  uint32_t nan = 0;  // integer test of the bits: vectorizes, unlike std::isnan
  for (int64_t j = 0; j < V; ++j) {
    scratch[j] = x[j] + b[j];
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

void py_logsumexp_rows(const carray<float>& logits, const carray<float>& bias, carray<double> out,
                       int n_threads) {
  if (logits.ndim() != 2 || logits.shape(1) < 1 || bias.ndim() != 1 ||
      bias.shape(0) != logits.shape(1) || out.ndim() != 1 || out.shape(0) != logits.shape(0))
    throw std::invalid_argument("logsumexp_rows: expected logits (m, V >= 1), bias (V,), out (m,)");
  const int64_t m = logits.shape(0), V = logits.shape(1);
  const float* x = logits.data();
  const float* b = bias.data();
  double* o = out.mutable_data();
  py::gil_scoped_release release;
  parallel_ranges(m, effective_threads(n_threads, m), [=](int, int64_t begin, int64_t end) {
    std::vector<float> scratch(V);
    for (int64_t i = begin; i < end; ++i) o[i] = row_logsumexp(x + i * V, b, scratch.data(), V);
  });
}

}  // namespace

void register_output(py::module_& m) {
  m.def("logsumexp_rows", &py_logsumexp_rows, py::arg("logits").noconvert(),
        py::arg("bias").noconvert(), py::arg("out").noconvert(), py::arg("n_threads"),
        "out[i] = log(sum_j exp(logits[i, j] + bias[j])).");
}

}  // namespace saffu
