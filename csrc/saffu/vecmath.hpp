// Float32 vector helpers shared by the kernels: fixed summation order, vectorizable without
// -ffast-math. SAFFU_AVX2_CLONES marks hot loops compiled for AVX2 as well as the baseline ISA
// (the variant is chosen when the module loads; wheels stay portable).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define SAFFU_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SAFFU_AVX2_CLONES
#endif

namespace saffu {

inline float total_of_lanes(const float lane[8]) {
  return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

// Eight independent lanes let these reductions vectorize without -ffast-math.
inline float sum(const float* x, int64_t n) {
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) lane[l] += x[j + l];
  float total = total_of_lanes(lane);
  for (; j < n; ++j) total += x[j];
  return total;
}

// y += alpha x
inline void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] += alpha * x[j];
}

// exp(x) for x <= 0 to about 2 ulp (Cody-Waite reduction, Cephes expf polynomial); x below -87
// is taken as -87 (exp = 1.6e-38 instead of underflowing). Branch-free, so softmax loops
// vectorize (std::exp calls and float compares under the default -ftrapping-math do not).
inline float exp_nonpositive(float x) {
  constexpr float kRound = 12582912.0f;     // 1.5 * 2^23: adding and subtracting it rounds
  constexpr uint32_t kMagnitude87 = 0x42ae0000u;  // bits of 87.0f
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  bits = (bits & 0x80000000u) | std::min(bits & 0x7fffffffu, kMagnitude87);  // |x| <= 87
  std::memcpy(&x, &bits, sizeof x);
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t exponent = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &exponent, sizeof scale);
  return p * scale;
}

inline float maximum(const float* x, int64_t n) {
  float lane[8] = {x[0], x[0], x[0], x[0], x[0], x[0], x[0], x[0]};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) lane[l] = std::max(lane[l], x[j + l]);
  float top = *std::max_element(lane, lane + 8);
  for (; j < n; ++j) top = std::max(top, x[j]);
  return top;
}

}  // namespace saffu
