// Sampling continuations of prompts, all streams of a batch in one call (contract:
// docs/internals.md, "Generation"). Per step and stream: the hidden vectors from the kept window
// state (HiddenSteps, bit-equal to saffu_forward), the logits sum_l h_l O_l^T + x_skip S + o in
// float32 (the parts h_l O_l^T of the radial context models cached by window), then one token
// drawn from the tempered, top-k / top-p cut distribution by inverting its CDF (the rule of
// saffu.model.sample_token) in float64.
//
// Determinism: this file is compiled without floating-point contraction (no FMA; and with
// -fno-trapping-math, which changes no result but lets float selects vectorize), and every
// logit is summed in the same order (each context model's part over i = 0, 1, ... of its
// inputs, the parts in order of l, then the skip inputs, then the bias) whatever the block it
// is computed in and whether its part was cached; so a stream's tokens do not depend on the
// batch it runs in, the thread count, the cache or the instruction set.
#include "saffu/generate.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <string>
#include <vector>

#include "saffu/check.hpp"
#include "saffu/parallel.hpp"

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define SAFFU_ISA_DISPATCH 1
#define SAFFU_TARGET(isa) __attribute__((target(isa)))
#define SAFFU_DOUBLE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SAFFU_ISA_DISPATCH 0
#define SAFFU_TARGET(isa)
#define SAFFU_DOUBLE_CLONES
#endif

namespace saffu {
namespace {

constexpr int kColumnPad = 128;  // the output weights' columns are padded to Vp = V rounded up
constexpr int kPanel = 64;        // ... and packed in panels of 64 columns (kColumnPad's divisor)

// The output weights of each context model in column panels: layer l's block (D Vp floats at
// l D Vp) holds panel p (D, kPanel) of its inputs i and columns v = p kPanel + c at
// p D kPanel + i kPanel + c, columns past V zero. A product tile reads its panel in order (a
// panel is 64 KB for D = 256: it stays in L2 across the row blocks; row-major (LD, Vp) rows
// 16 KB apart fell into a few cache sets and came from L3 for every block of rows).
std::vector<float> input_panels(const float* output_t, int64_t V, int L, int64_t D, int64_t Vp) {
  std::vector<float> panels(L * D * Vp, 0.0f);
  const int64_t LD = L * D;
  for (int l = 0; l < L; ++l)
    for (int64_t v = 0; v < V; ++v) {
      float* column = panels.data() + l * D * Vp + v / kPanel * D * kPanel + v % kPanel;
      const float* weights = output_t + v * LD + l * D;
      for (int64_t i = 0; i < D; ++i) column[i * kPanel] = weights[i];
    }
  return panels;
}

// out[r Vp + c] = sum_i H[r * stride + i] panel[i kPanel + c] for R rows and C columns of a
// panel (from its column `panel`, `out` likewise offset), i < inputs, summed in order of i.
template <int R, int C>
inline __attribute__((always_inline)) void product_tile(const float* H, int64_t stride,
                                                        int64_t inputs, const float* panel,
                                                        int64_t Vp, float* out) {
  float acc[R][C] = {};
  for (int64_t i = 0; i < inputs; ++i) {
    const float* o = panel + i * kPanel;
    for (int r = 0; r < R; ++r) {
      const float h = H[r * stride + i];
      for (int c = 0; c < C; ++c) acc[r][c] += h * o[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[r * Vp + c] = acc[r][c];
}

// The tiles of R rows by C columns (C divides kPanel) of one panel, columns [v0, v0 + kPanel).
template <int R, int C>
inline __attribute__((always_inline)) void panel_tiles(const float* H, int64_t stride,
                                                       int64_t inputs, const float* panel,
                                                       int64_t Vp, int64_t v0, float* out) {
  for (int c0 = 0; c0 < kPanel; c0 += C)
    product_tile<R, C>(H, stride, inputs, panel + c0, Vp, out + v0 + c0);
}

// out (rows, Vp) = H (rows, inputs; rows `stride` apart) times the panels P of one context
// model: panel by panel (each read from L2 by every block of rows), in tiles of R = 4 rows by
// C columns, the rows left over in one tile of 1-3 rows.
template <int C>
inline __attribute__((always_inline)) void products_in_tiles(const float* H, int64_t rows,
                                                             int64_t stride, int64_t inputs,
                                                             const float* P, int64_t Vp,
                                                             float* out) {
  constexpr int R = 4;
  const int64_t blocked = rows - rows % R;
  const float* left = H + blocked * stride;
  for (int64_t v0 = 0; v0 < Vp; v0 += kPanel) {
    const float* panel = P + v0 * inputs;
    for (int64_t r = 0; r < blocked; r += R)
      panel_tiles<R, C>(H + r * stride, stride, inputs, panel, Vp, v0, out + r * Vp);
    float* out_left = out + blocked * Vp;
    switch (rows - blocked) {
      case 3: panel_tiles<3, C>(left, stride, inputs, panel, Vp, v0, out_left); break;
      case 2: panel_tiles<2, C>(left, stride, inputs, panel, Vp, v0, out_left); break;
      case 1: panel_tiles<1, C>(left, stride, inputs, panel, Vp, v0, out_left); break;
      default: break;
    }
  }
}

#if SAFFU_ISA_DISPATCH
SAFFU_TARGET("avx512f")
void products_avx512(const float* H, int64_t rows, int64_t stride, int64_t inputs,
                     const float* P, int64_t Vp, float* out) {
  products_in_tiles<64>(H, rows, stride, inputs, P, Vp, out);  // 16 zmm accumulators
}

SAFFU_TARGET("avx2")
void products_avx2(const float* H, int64_t rows, int64_t stride, int64_t inputs, const float* P,
                   int64_t Vp, float* out) {
  products_in_tiles<16>(H, rows, stride, inputs, P, Vp, out);  // 8 ymm accumulators
}
#endif

void products_baseline(const float* H, int64_t rows, int64_t stride, int64_t inputs,
                       const float* P, int64_t Vp, float* out) {
  products_in_tiles<8>(H, rows, stride, inputs, P, Vp, out);
}

// The blocking differs by instruction set; the sums, and so the results, do not.
void products(const float* H, int64_t rows, int64_t stride, int64_t inputs, const float* P,
              int64_t Vp, float* out) {
#if SAFFU_ISA_DISPATCH
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx512) return products_avx512(H, rows, stride, inputs, P, Vp, out);
  if (avx2) return products_avx2(H, rows, stride, inputs, P, Vp, out);
#endif
  products_baseline(H, rows, stride, inputs, P, Vp, out);
}

// ---- Sampling ----

// exp(x) for x <= 0 in float64 to about 1 ulp (a Cody-Waite reduction to |r| <= ln(2) / 2,
// then the Taylor polynomial of degree 13, without a division), branch-free so that loops over
// the vocabulary vectorize; 0 below -708 (and for -inf, the banned tokens).
inline double exp_nonpositive(double x) {
  constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  int64_t round_bits;
  std::memcpy(&round_bits, &kRound, sizeof round_bits);
  const double t = std::max(x, -708.0);
  const double shifted = t * 1.4426950408889634 + kRound;  // k = round(t / ln 2) ...
  int64_t k_bits;
  std::memcpy(&k_bits, &shifted, sizeof k_bits);  // ... also as the integer k_bits - round_bits
  const double k = shifted - kRound;
  const double r = (t - k * 6.93145751953125e-1) - k * 1.42860682030941723212e-6;
  double p = 1.0 / 6227020800.0;  // 1/13!, then Horner down to 1/0!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const int64_t bits = (k_bits - round_bits + 1023) << 52;  // 2^k, without a conversion
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x < -708.0 ? 0.0 : p * scale;
}

// The ordered integer key of a float (its order is the floats' order), and back.
inline int32_t order_key(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits ^ ((bits >> 31) & 0x7fffffff);
}
inline float from_order_key(int32_t key) {
  const int32_t bits = key ^ ((key >> 31) & 0x7fffffff);
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// The largest of logits[v] + ban[v] (ban: 0, or -inf for a banned token), as an integer max
// over order keys (a float max does not vectorize under IEEE rules).
SAFFU_DOUBLE_CLONES float largest_logit(const float* logits, const float* ban, int64_t n) {
  int32_t best = order_key(-std::numeric_limits<float>::infinity());
  for (int64_t v = 0; v < n; ++v) best = std::max(best, order_key(logits[v] + ban[v]));
  return from_order_key(best);
}

// Sum of x[0..n) in 32 lanes (four vectors of eight independent additions).
inline double lane_sum(const double* x, int64_t n) {
  constexpr int kLanes = 32;
  double lane[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int i = 0; i < kLanes; ++i) lane[i] += x[j + i];
  double total = 0.0;
  for (int i = 0; i < kLanes; ++i) total += lane[i];
  for (; j < n; ++j) total += x[j];
  return total;
}

// For each token x = (l - top) / temperature with l = logits + ban (NumPy's operations; no
// division when the temperature is 1, where it changes nothing; l added in float32, which is
// exact for ban = 0 or -inf and spares a conversion), its bucket depth -16 x and its mass
// e = exp(x); returns the sum of the masses.
template <bool kDivide>
inline __attribute__((always_inline)) double tempered(const float* __restrict logits,
                                                      const float* __restrict ban, double top,
                                                      double temperature, double per_nat,
                                                      double* __restrict depth,
                                                      double* __restrict e, int64_t n) {
  for (int64_t v = 0; v < n; ++v) {
    const double l = static_cast<double>(logits[v] + ban[v]);
    const double x = kDivide ? (l - top) / temperature : l - top;
    depth[v] = -x * per_nat;
    e[v] = exp_nonpositive(x);
  }
  return lane_sum(e, n);
}

SAFFU_DOUBLE_CLONES double tempered_masses(const float* logits, const float* ban, double top,
                                           double temperature, double per_nat, double* depth,
                                           double* e, int64_t n) {
  return temperature == 1.0 ? tempered<false>(logits, ban, top, temperature, per_nat, depth, e, n)
                            : tempered<true>(logits, ban, top, temperature, per_nat, depth, e, n);
}

// NumPy's pairwise summation of a contiguous float64 array (what ndarray.sum computes).
double pairwise_sum(const double* a, int64_t n) {
  if (n < 8) {
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) total += a[i];
    return total;
  }
  if (n <= 128) {
    double r[8];
    for (int l = 0; l < 8; ++l) r[l] = a[l];
    int64_t i = 8;
    for (; i < n - n % 8; i += 8)
      for (int l = 0; l < 8; ++l) r[l] += a[i + l];
    double total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) total += a[i];
    return total;
  }
  int64_t half = n / 2;
  half -= half % 8;
  return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

// The sum of e[v], and the count, of the tokens v with depth[v] < level. (Depths are doubles:
// GCC 12 at -O3 miscompiles this masked sum over int32 buckets with double masses.)
SAFFU_DOUBLE_CLONES double mass_below(const double* depth, const double* e, int64_t n,
                                      double level) {
  constexpr int kLanes = 32;  // four vectors of eight: independent additions
  double lane[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += depth[j + l] < level ? e[j + l] : 0.0;
  double total = 0.0;
  for (int l = 0; l < kLanes; ++l) total += lane[l];
  for (; j < n; ++j) total += depth[j] < level ? e[j] : 0.0;
  return total;
}

// flags[v] = 1 if begin <= depth[v] < end, else 0 (a vectorized pass: few tokens are kept).
SAFFU_DOUBLE_CLONES void flag_range(const double* depth, int64_t n, double begin, double end,
                                    uint8_t* flags) {
  for (int64_t v = 0; v < n; ++v) flags[v] = (depth[v] >= begin) & (depth[v] < end);
}

// bucket[v] = min(floor(depth[v]), last) (a vectorized pass; depth >= 0, +inf for a banned
// token).
SAFFU_DOUBLE_CLONES void buckets_of(const double* depth, int64_t n, int32_t last, int32_t* bucket) {
  for (int64_t v = 0; v < n; ++v)
    bucket[v] = depth[v] < last ? static_cast<int32_t>(depth[v]) : last;
}

SAFFU_DOUBLE_CLONES int64_t count_below(const double* depth, int64_t n, double level) {
  int64_t count = 0;
  for (int64_t j = 0; j < n; ++j) count += depth[j] < level;
  return count;
}

// Draws tokens from logits as saffu.model.sample_token does with rng.choice, given the uniform
// draw u: tokens sorted by descending logit (ties: lower id first), the first top_k kept,
// probabilities exp((l - l_max) / temperature) normalized, the shortest prefix of mass >= top_p
// kept and renormalized, and the token where the cumulative probability first exceeds u.
//
// Only a short sorted prefix is needed: the tokens fall in buckets of 1/16 nat of their depth
// 16 (l_max - l) / temperature (bucket b: depth in [b, b + 1); the last one holds the rest),
// which follow the sorted order. A draw without top-p first tries the head (the tokens within
// 4 nats of the most likely: a masked sum for its mass, then its tokens sorted); otherwise the
// bucket where the cumulative mass crosses the threshold (the nucleus target, or the draw) is
// found by a binary search over the prefix sums of the buckets' masses (one pass), and only
// its tokens are sorted. The masses are summed in another order than
// NumPy's (differences of about 1e-16 relative, which decide a draw only when u lies that close
// to a CDF boundary); with top_k, the sorted top k are summed exactly as NumPy sums them.
class Sampler {
 public:
  Sampler(int64_t V, const Sampling& sampling, const bool* banned)
      : V_(V), s_(sampling), ban_(V), e_(V), depth_(V) {
    for (int64_t v = 0; v < V; ++v) ban_[v] = banned[v] ? -std::numeric_limits<float>::infinity() : 0.0f;
  }

  int32_t sample(const float* logits, double u) {
    logits_ = logits;
    const float top = largest_logit(logits, ban_.data(), V_);
    if (s_.temperature == 0.0) {  // np.argmax: the first largest (0 if every token is banned)
      int32_t v = 0;
      while (v < V_ && logits[v] + ban_[v] != top) ++v;
      return v < V_ ? v : 0;
    }
    require(top > -std::numeric_limits<float>::infinity(),
            "every token is banned: there is nothing to sample");
    // banned tokens: depth +inf (no bucket but the last one's end), mass 0
    total_ = tempered_masses(logits, ban_.data(), top, s_.temperature, kPerNat, depth_.data(),
                             e_.data(), V_);
    head_ready_ = false;
    if (s_.top_k > 0 && s_.top_k < V_) return sample_top_k(u);
    return sample_all(u);
  }

 private:
  static constexpr int32_t kBuckets = 1024;  // of 1/16 nat each; the last one holds the rest
  static constexpr double kPerNat = 16.0;
  // The head, sorted once per draw: the tokens within 4 nats of the most likely, where most
  // draws without top-p end (the prefix sums of bucket_masses are for the rest).
  static constexpr int32_t kHead = 64;

  // The depth where bucket `level` begins (every depth lies below the end of the last bucket).
  static double start_of(int32_t level) {
    return level < kBuckets ? level : std::numeric_limits<double>::infinity();
  }
  // The mass of the buckets below `level` (bucket_masses of the draw, first).
  double mass_below(int32_t level) const { return below_[level]; }

  // below_[level] = the mass of the buckets below level, for every level in [0, kBuckets]:
  // each bucket's mass summed in order of v (in four interleaved partial sums, which keep
  // successive additions to one bucket apart), then the buckets in order. One pass; every
  // level's mass is then a look-up, and prefix sums never decrease with the level.
  void bucket_masses() {
    constexpr int kParts = 4;
    std::fill(partial_.begin(), partial_.end(), 0.0);
    buckets_of(depth_.data(), V_, kBuckets - 1, bucket_.data());  // banned: the last, mass 0
    for (int64_t v = 0; v < V_; ++v) partial_[(v % kParts) * kBuckets + bucket_[v]] += e_[v];
    below_[0] = 0.0;
    for (int32_t b = 0; b < kBuckets; ++b)
      below_[b + 1] = below_[b] + ((partial_[b] + partial_[kBuckets + b]) +
                                   (partial_[2 * kBuckets + b] + partial_[3 * kBuckets + b]));
  }

  // The smallest level in (low, stop] for which enough(level) holds (enough grows with the
  // level, and fails at `low`), or stop + 1: an exponential, then a binary search.
  template <typename Enough>
  static int32_t first_level(int32_t low, int32_t stop, Enough enough) {
    if (low >= stop) return stop + 1;
    int32_t step = 1, high = low + 1;
    while (high < stop && !enough(high)) {
      low = high;
      step *= 2;
      high = std::min(low + step, stop);
    }
    if (!enough(high)) return stop + 1;
    while (high - low > 1) {
      const int32_t mid = low + (high - low) / 2;
      (enough(mid) ? high : low) = mid;
    }
    return high;
  }

  // The bucket where the mass crosses threshold: levels (first, first + 1) such that the mass
  // below `first` does not exceed (or, with `reach`, reach) threshold and the mass below
  // first + 1 does, searched in (low, stop] (the mass below `low` does not); (stop, stop + 1)
  // if there are none. A binary search over the prefix sums.
  std::pair<int32_t, int32_t> mass_range(double threshold, int32_t low, int32_t stop,
                                         bool reach) const {
    if (low >= stop) return {stop, stop + 1};
    const double* begin = below_.data() + low + 1;
    const double* end = below_.data() + stop + 1;
    const double* found = reach ? std::lower_bound(begin, end, threshold)
                                : std::upper_bound(begin, end, threshold);
    if (found == end) return {stop, stop + 1};
    const auto level = static_cast<int32_t>(found - below_.data());
    return {level - 1, level};
  }

  // The tokens of buckets [first, last) in sorted order (descending logit, then ascending id).
  void sorted_tokens(int32_t first, int32_t last, std::vector<int32_t>& tokens) const {
    flag_range(depth_.data(), V_, first, start_of(last), flags_.data());
    tokens.clear();
    for (int64_t j = 0; j < V_; j += 8) {  // eight flags at once: most tokens are not kept
      uint64_t eight;
      std::memcpy(&eight, flags_.data() + j, sizeof eight);
      if (eight == 0) continue;
      for (int64_t v = j; v < j + 8; ++v)
        if (flags_[v]) tokens.push_back(static_cast<int32_t>(v));
    }
    const auto count = static_cast<int64_t>(tokens.size());
    // the logits' order (double(l) preserves it; banned tokens are in no bucket), as one
    // integer per token: the descending order key of its logit (+ 0: -0 ties with +0), then its id
    keys_.resize(count);
    for (int64_t i = 0; i < count; ++i) {
      const auto key = static_cast<uint32_t>(order_key(logits_[tokens[i]] + 0.0f)) ^ 0x80000000u;
      keys_[i] = static_cast<uint64_t>(~key) << 32 | static_cast<uint32_t>(tokens[i]);
    }
    std::sort(keys_.begin(), keys_.end());
    for (int64_t i = 0; i < count; ++i) tokens[i] = static_cast<int32_t>(keys_[i] & 0xffffffffu);
  }

  // The first token in sorted order, among the tokens of buckets below `stop` and then `tail`,
  // where the cumulative mass exceeds threshold (the last token of positive mass if rounding
  // leaves it unreached); the buckets below `low` hold less mass than threshold.
  int32_t locate(double threshold, int32_t low, int32_t stop, const std::vector<int32_t>& tail) {
    const auto [first, last_level] = mass_range(threshold, low, stop, false);
    double cumulative = mass_below(std::min(first, stop));
    int32_t last = -1;
    auto walk = [&](const std::vector<int32_t>& tokens) {
      for (int32_t v : tokens) {
        cumulative += e_[v];
        if (e_[v] > 0.0) last = v;
        if (cumulative > threshold) return true;
      }
      return false;
    };
    if (first < stop) {
      sorted_tokens(first, last_level, members_);
      if (walk(members_)) return last;
    }
    for (int32_t bucket = last_level; bucket < stop; ++bucket) {  // rounding: bucket by bucket
      sorted_tokens(bucket, bucket + 1, members_);
      if (walk(members_)) return last;
    }
    if (walk(tail)) return last;
    if (last < 0) {  // rounding: the threshold is at the total mass; take the last token
      sorted_tokens(0, stop, members_);
      for (int32_t v : members_)
        if (e_[v] > 0.0) last = v;
      for (int32_t v : tail)
        if (e_[v] > 0.0) last = v;
    }
    return last;
  }

  // The head's tokens sorted (gathered on first use in a draw).
  const std::vector<int32_t>& head() {
    if (!head_ready_) sorted_tokens(0, kHead, head_);
    head_ready_ = true;
    return head_;
  }

  // The first token of `tokens` where the cumulative mass exceeds threshold, or -1.
  int32_t first_above(double threshold, const std::vector<int32_t>& tokens) const {
    double cumulative = 0.0;
    for (int32_t v : tokens)
      if ((cumulative += e_[v]) > threshold) return v;
    return -1;
  }

  // The token where the cumulative mass over every token first exceeds threshold: in the head
  // if its mass (a masked sum) exceeds threshold, else (or if rounding leaves the head short)
  // past it, by the prefix sums.
  int32_t sample_from_all(double threshold) {
    const double head_mass = saffu::mass_below(depth_.data(), e_.data(), V_, kHead);
    if (head_mass > threshold) {
      const int32_t token = first_above(threshold, head());
      if (token >= 0) return token;
      bucket_masses();
      return locate(threshold, 0, kBuckets, kept_);
    }
    bucket_masses();
    return locate(threshold, kHead, kBuckets, kept_);
  }

  // No top-k: probabilities e / total over every token.
  int32_t sample_all(double u) {
    kept_.clear();
    if (s_.top_p <= 0.0) return sample_from_all(u * total_);
    bucket_masses();
    // The nucleus: the shortest sorted prefix whose mass reaches top_p * total; then a draw
    // from it (the buckets below `bucket` and the tail `kept_`).
    const double target = s_.top_p * total_;
    const auto [first, last] = mass_range(target, 0, kBuckets, true);
    if (first >= kBuckets) return locate(u * total_, 0, kBuckets, kept_);  // keep all
    double cumulative = mass_below(first);
    sorted_tokens(first, last, members_);
    for (int32_t v : members_) {
      kept_.push_back(v);
      if ((cumulative += e_[v]) >= target) return locate(u * cumulative, 0, first, kept_);
    }
    for (int32_t bucket = last; bucket < kBuckets; ++bucket) {  // rounding: bucket by bucket
      sorted_tokens(bucket, bucket + 1, members_);
      kept_.clear();
      for (int32_t v : members_) {
        kept_.push_back(v);
        if ((cumulative += e_[v]) >= target) return locate(u * cumulative, 0, bucket, kept_);
      }
    }
    kept_.clear();
    return locate(u * total_, 0, kBuckets, kept_);
  }

  // With top-k: the k first tokens sorted, then NumPy's arithmetic on them, step by step.
  int32_t sample_top_k(double u) {
    if (count_below(depth_.data(), V_, kHead) >= s_.top_k) {
      kept_.assign(head().begin(), head().end());
    } else {
      const int32_t level = std::min(kBuckets, first_level(kHead, kBuckets, [&](int32_t level) {
        return count_below(depth_.data(), V_, start_of(level)) >= s_.top_k;
      }));
      sorted_tokens(0, level, kept_);
    }
    if (static_cast<int64_t>(kept_.size()) > s_.top_k) kept_.resize(s_.top_k);
    const int64_t k = static_cast<int64_t>(kept_.size());
    probs_.resize(k);
    for (int64_t i = 0; i < k; ++i) probs_[i] = e_[kept_[i]];
    normalize(probs_.data(), k);
    int64_t keep = k;
    if (s_.top_p > 0.0) {
      double cumulative = 0.0;
      int64_t below = 0;
      for (int64_t i = 0; i < k; ++i) {
        cumulative += probs_[i];
        if (cumulative < s_.top_p) ++below;
      }
      keep = std::min(k, below + 1);
      normalize(probs_.data(), keep);
    }
    // rng.choice(keep, p=probs): cdf = cumsum(p) / its last entry; the first entry > u.
    cdf_.resize(keep);
    double cumulative = 0.0;
    for (int64_t i = 0; i < keep; ++i) cdf_[i] = cumulative += probs_[i];
    const double last = cdf_[keep - 1];
    int64_t index = 0;
    while (index < keep - 1 && cdf_[index] / last <= u) ++index;
    return kept_[index];
  }

  static void normalize(double* p, int64_t n) {
    const double total = pairwise_sum(p, n);
    for (int64_t i = 0; i < n; ++i) p[i] /= total;
  }

  int64_t V_;
  Sampling s_;
  std::vector<float> ban_;
  const float* logits_ = nullptr;  // of the current draw
  std::vector<double> e_;
  std::vector<double> depth_;
  double total_ = 0.0;
  bool head_ready_ = false;
  std::vector<double> partial_ = std::vector<double>(4 * kBuckets);
  std::vector<double> below_ = std::vector<double>(kBuckets + 1);
  std::vector<int32_t> bucket_ = std::vector<int32_t>(V_);  // bucket_masses' scratch
  std::vector<int32_t> head_, members_, kept_;
  mutable std::vector<uint64_t> keys_;  // sorted_tokens' scratch
  mutable std::vector<uint8_t> flags_ = std::vector<uint8_t>((V_ + 7) / 8 * 8, 0);  // likewise
  std::vector<double> probs_, cdf_;
};

// ---- Streams ----

struct Batch {
  const Corpus& prompts;
  const GenerationModel& model;
  const Sampling& sampling;
  const double* uniforms;
  int64_t max_tokens;
  const std::vector<int64_t>& starts;  // (streams + 1,) document bounds in prompts
  const std::vector<int32_t>& positions;  // 0, 1, 2, ...
  const std::vector<float>& by_input;  // input_panels: layer l's block at l D Vp
  int64_t Vp;
  const std::vector<int>& windows;  // (n_layers,): window_of each layer (0: not cached)
  int64_t cache_rows;  // rows each thread may cache, all layers together
  HiddenSteps& steps;
  int32_t* out;
  int32_t* lengths;
};

// The window length K of a context model whose hidden state is a function of the last K tokens
// alone (a radial window: its slots, masked before the document start, are all it reads), if
// every window's key (window_key) fits in 62 bits; else 0.
int window_of(const LayerSpec& layer, int64_t V) {
  if (static_cast<ContextKind>(layer.kind) != ContextKind::kRadial) return 0;
  double keys = 1.0;
  for (int k = 0; k < layer.K; ++k) keys *= static_cast<double>(V + 1);
  return keys < 0x1p62 ? layer.K : 0;
}

// The key of the window of the last K tokens of doc[0..n) (the target at position n): its
// tokens + 1 as digits base V + 1, 0 for a slot before the document start.
int64_t window_key(const int32_t* doc, int64_t n, int K, int64_t V) {
  int64_t key = 0;
  for (int k = 1; k <= K; ++k) key = key * (V + 1) + (k <= n ? doc[n - k] + 1 : 0);
  return key;
}

// Rows of Vp floats by key, stored while a shared count of rows lasts (in blocks, allocated as
// they fill; a stored row never moves): on their first use, or (`second_use`) on their second,
// which spares storing the keys that never recur (most windows of two tokens or more: storing a
// row costs a fresh 16 KB of memory and the reads of its later uses).
class RowCache {
 public:
  RowCache(int64_t Vp, int64_t* rows_left, bool second_use)
      : Vp_(Vp), rows_left_(rows_left), second_use_(second_use) {}

  // Whether a missed key's row should be stored (counts the key's uses).
  bool admits(int64_t key) { return !second_use_ || !seen_.insert(key).second; }

  const float* find(int64_t key) const {
    const auto found = slot_.find(key);
    return found == slot_.end() ? nullptr : row(found->second);
  }

  // The row to store key's into, or nullptr when the rows are used up.
  float* store(int64_t key) {
    if (*rows_left_ <= 0) return nullptr;
    --*rows_left_;
    const int64_t s = used_++;
    if (s % kBlockRows == 0) blocks_.emplace_back(new float[kBlockRows * Vp_]);
    slot_.emplace(key, s);
    return row(s);
  }

 private:
  static constexpr int64_t kBlockRows = 64;
  float* row(int64_t s) const { return blocks_[s / kBlockRows].get() + (s % kBlockRows) * Vp_; }

  int64_t Vp_;
  int64_t* rows_left_;
  bool second_use_;
  std::unordered_map<int64_t, int64_t> slot_;
  std::unordered_set<int64_t> seen_;  // with second_use: the keys missed once
  std::vector<std::unique_ptr<float[]>> blocks_;
  int64_t used_ = 0;
};

// Each layer's part h_l O_l^T (Vp,) of the output product, for the rows of a step. Each part is
// summed on its own, in order of i, whatever the tile (the logits add them in order of l). A
// layer read by its window of the last K tokens alone (window_of) caches its parts by window:
// the windows a step misses are computed in one product (each once), then stored while the
// thread's rows last (past them, computed every time they occur), so a part does not depend on
// whether it was cached.
class OutputParts {
 public:
  OutputParts(const Batch& batch, int64_t max_rows)
      : b_(batch), L_(batch.model.n_layers), D_(batch.model.D), LD_(L_ * D_), Vp_(batch.Vp),
        rows_left_(batch.cache_rows) {
    for (int l = 0; l < L_; ++l) {
      caches_.emplace_back(Vp_, &rows_left_, batch.windows[l] >= 2);
      buffers_.emplace_back(max_rows * Vp_);
    }
    gathered_.resize(max_rows * D_);
  }

  // The parts of rows (rows, L D) of hidden vectors, row r that of the token after
  // tokens[active[r]].
  void compute(const float* H, const std::vector<std::vector<int32_t>>& tokens,
               const std::vector<int64_t>& active) {
    const int64_t rows = static_cast<int64_t>(active.size());
    parts_.resize(rows * L_);
    keys_.resize(rows);
    for (int l = 0; l < L_; ++l) {
      const float* OI = b_.by_input.data() + l * D_ * Vp_;
      float* buffer = buffers_[l].data();
      const int K = b_.windows[l];
      if (K == 0) {
        products(H + l * D_, rows, LD_, D_, OI, Vp_, buffer);
        for (int64_t r = 0; r < rows; ++r) parts_[r * L_ + l] = buffer + r * Vp_;
        continue;
      }
      RowCache& cache = caches_[l];
      pending_.clear();
      int64_t misses = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const std::vector<int32_t>& doc = tokens[active[r]];
        const int64_t key = window_key(doc.data(), static_cast<int64_t>(doc.size()), K, b_.prompts.V);
        keys_[r] = key;
        const float* row = cache.find(key);
        parts_[r * L_ + l] = row;
        if (!row && pending_.emplace(key, misses).second) {
          std::copy(H + r * LD_ + l * D_, H + r * LD_ + (l + 1) * D_, gathered_.data() + misses * D_);
          ++misses;
        }
      }
      if (misses == 0) continue;
      products(gathered_.data(), misses, D_, D_, OI, Vp_, buffer);
      for (const auto& [key, index] : pending_)
        if (float* stored = cache.admits(key) ? cache.store(key) : nullptr)
          std::copy(buffer + index * Vp_, buffer + (index + 1) * Vp_, stored);
      for (int64_t r = 0; r < rows; ++r)
        if (!parts_[r * L_ + l]) {
          const float* row = cache.find(keys_[r]);
          parts_[r * L_ + l] = row ? row : buffer + pending_.at(keys_[r]) * Vp_;
        }
    }
  }

  // The layers' parts of row r (L,), valid until the next compute.
  const float* const* of(int64_t r) const { return parts_.data() + r * L_; }

 private:
  const Batch& b_;
  int L_;
  int64_t D_, LD_, Vp_;
  int64_t rows_left_;  // rows this thread may still store, all layers together
  std::vector<RowCache> caches_;             // (L,): unused for the layers not cached
  std::vector<std::vector<float>> buffers_;  // (L,) of (rows, Vp): computed parts, or misses
  std::vector<float> gathered_;              // (misses, D): the hidden vectors of the misses
  std::unordered_map<int64_t, int64_t> pending_;  // a step's missed keys: their rows in buffer
  std::vector<int64_t> keys_;
  std::vector<const float*> parts_;
};

// The nonzero bits (column, value) of each token's cipher vector, found on first use.
class NonzeroBits {
 public:
  NonzeroBits(const float* E, int64_t V, int64_t bits) : E_(E), bits_(bits), rows_(V), known_(V, 0) {}

  const std::vector<std::pair<int64_t, float>>& of(int32_t token) {
    if (!known_[token]) {
      const float* x = E_ + static_cast<int64_t>(token) * bits_;
      for (int64_t j = 0; j < bits_; ++j)
        if (x[j] != 0.0f) rows_[token].emplace_back(j, x[j]);
      known_[token] = 1;
    }
    return rows_[token];
  }

 private:
  const float* E_;
  int64_t bits_;
  std::vector<std::vector<std::pair<int64_t, float>>> rows_;
  std::vector<char> known_;
};

// The vector loops of logits_of, for each instruction set (the same sums on each).
// dst[v] += src[v]
SAFFU_DOUBLE_CLONES void add_to(float* dst, const float* src, int64_t n) {
  for (int64_t v = 0; v < n; ++v) dst[v] += src[v];
}
// dst[v] += x row[v]
SAFFU_DOUBLE_CLONES void add_scaled(float* dst, float x, const float* row, int64_t n) {
  for (int64_t v = 0; v < n; ++v) dst[v] += x * row[v];
}
// logits[v] = (logits[v] + skip[v]) + bias[v]
SAFFU_DOUBLE_CLONES void add_skip_and_bias(float* logits, const float* skip, const float* bias,
                                           int64_t n) {
  for (int64_t v = 0; v < n; ++v) logits[v] = (logits[v] + skip[v]) + bias[v];
}

// logits[v] = ((parts[0][v] + parts[1][v] + ...) + sum over the last lags tokens' nonzero bits
// x_j of x_j S[j, v]) + o[v]: the layers' parts added in order of l, then the skip rows in the
// order SaffuModel.logits sums them (CSR order: lag 1's bits ascending, then lag 2's, ...),
// then the bias.
void logits_of(const GenerationModel& m, NonzeroBits& nonzero, int64_t V, int64_t bits,
               const std::vector<int32_t>& tokens, const float* const* parts, float* skip,
               float* logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  std::copy(parts[0], parts[0] + V, logits);
  for (int l = 1; l < m.n_layers; ++l) add_to(logits, parts[l], V);
  if (m.lags == 0) return add_to(logits, m.bias, V);
  std::fill(skip, skip + V, 0.0f);
  for (int64_t k = 1; k <= m.lags && k <= n; ++k)
    for (const auto& [j, x] : nonzero.of(tokens[n - k]))
      add_scaled(skip, x, m.skip_weight + ((k - 1) * bits + j) * V, V);
  add_skip_and_bias(logits, skip, m.bias, V);
}

// Runs streams [first, last) to the end, stepping all their active streams together.
void run_streams(const Batch& batch, int64_t first, int64_t last) {
  const int64_t V = batch.prompts.V, LD = batch.model.n_layers * batch.model.D;
  const int64_t count = last - first, T = batch.max_tokens;
  std::vector<std::vector<int32_t>> tokens(count);
  std::vector<int64_t> length(count, 0);
  std::vector<char> done(count, 0);
  for (int64_t s = 0; s < count; ++s) {
    const int32_t* ids = batch.prompts.ids;
    tokens[s].assign(ids + batch.starts[first + s], ids + batch.starts[first + s + 1]);
    tokens[s].reserve(tokens[s].size() + T + 1);
  }
  std::vector<float> H(count * LD), skip(V), logits(V);
  std::vector<int64_t> active;
  OutputParts parts(batch, count);
  Sampler sampler(V, batch.sampling, batch.model.banned);
  NonzeroBits nonzero(batch.prompts.E, V, batch.prompts.bits);
  for (int64_t step = 0; step < T; ++step) {
    active.clear();
    for (int64_t s = 0; s < count; ++s)
      if (!done[s]) active.push_back(s);
    if (active.empty()) break;
    for (size_t a = 0; a < active.size(); ++a) {
      const int64_t s = active[a];
      batch.steps.next(first + s, tokens[s].data(), batch.positions.data(),
                       static_cast<int64_t>(tokens[s].size()), H.data() + a * LD);
    }
    parts.compute(H.data(), tokens, active);
    for (size_t a = 0; a < active.size(); ++a) {
      const int64_t s = active[a], b = first + s;
      logits_of(batch.model, nonzero, V, batch.prompts.bits, tokens[s], parts.of(a), skip.data(),
                logits.data());
      const int32_t token = sampler.sample(logits.data(), batch.uniforms[b * T + step]);
      if (token == batch.sampling.stop_token) {
        done[s] = 1;
        continue;
      }
      tokens[s].push_back(token);
      batch.out[b * T + length[s]++] = token;
    }
  }
  for (int64_t s = 0; s < count; ++s) {
    const int64_t b = first + s;
    std::fill(batch.out + b * T + length[s], batch.out + (b + 1) * T, -1);
    batch.lengths[b] = static_cast<int32_t>(length[s]);
  }
}

}  // namespace

void saffu_generate(const Corpus& prompts, const GenerationModel& model, const Sampling& sampling,
                    const double* uniforms, int64_t streams, int64_t max_tokens, int32_t* out,
                    int32_t* lengths, int64_t cache_bytes, int n_threads) {
  require(cache_bytes >= 0, "cache_bytes must be >= 0");
  require(model.n_layers >= 1 && model.D >= 1, "need at least one context model and D >= 1");
  require(model.lags >= 0, "lags must be >= 0");
  require(prompts.n >= 1 && prompts.pos[0] == 0, "the prompts must begin with a document start");
  require(max_tokens >= 0, "max_tokens must be >= 0");
  require(std::isfinite(sampling.temperature) && sampling.temperature >= 0.0,
          "temperature must be finite and >= 0");
  require(sampling.top_k >= 0, "top_k must be >= 0 (0: every token)");
  require(sampling.top_p >= 0.0 && sampling.top_p <= 1.0, "top_p must lie in [0, 1] (0: no cut)");
  require(sampling.stop_token >= 0 && sampling.stop_token < prompts.V,
          "stop_token must be a token id in [0, V)");
  check_corpus_range(prompts, 0, prompts.n);
  std::vector<int64_t> starts;
  for (int64_t t = 0; t < prompts.n; ++t)
    if (prompts.pos[t] == 0) starts.push_back(t);
  require(static_cast<int64_t>(starts.size()) == streams,
          "uniforms, out and lengths must have one row per document of the prompts (" +
              std::to_string(starts.size()) + ")");
  starts.push_back(prompts.n);
  int64_t longest = 0;
  for (int64_t s = 0; s < streams; ++s) longest = std::max(longest, starts[s + 1] - starts[s]);
  std::vector<int32_t> positions(longest + max_tokens + 1);
  for (size_t j = 0; j < positions.size(); ++j) positions[j] = static_cast<int32_t>(j);

  const int64_t V = prompts.V;
  const int64_t Vp = (V + kColumnPad - 1) / kColumnPad * kColumnPad;
  const std::vector<float> by_input =
      input_panels(model.output_t, V, model.n_layers, model.D, Vp);
  HiddenSteps steps(prompts.E, V, prompts.bits, model.layers, model.n_layers, model.aggregation,
                    model.D, streams);
  std::vector<int> windows(model.n_layers);
  for (int l = 0; l < model.n_layers; ++l) windows[l] = window_of(model.layers[l], V);
  const int threads = effective_threads(n_threads, streams);
  const int64_t row_bytes = Vp * static_cast<int64_t>(sizeof(float));
  const int64_t cache_rows = cache_bytes / row_bytes / threads;
  const Batch batch{prompts, model, sampling, uniforms, max_tokens, starts, positions,
                    by_input, Vp, windows, cache_rows, steps, out, lengths};
  parallel_ranges(streams, threads,
                  [&](int, int64_t first, int64_t last) { run_streams(batch, first, last); });
}

}  // namespace saffu
