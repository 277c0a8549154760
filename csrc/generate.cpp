// Sampling continuations of prompts, all streams of a batch in one call (contract:
// docs/internals.md, "Generation"). Per step and stream: the hidden vectors from the kept window
// state (HiddenSteps, bit-equal to saffu_forward), the logits h O^T + x_skip S + o in float32,
// then one token drawn from the tempered, top-k / top-p cut distribution by inverting its CDF
// (the rule of saffu.model.sample_token) in float64.
//
// Determinism: this file is compiled without floating-point contraction (no FMA), and every
// logit is summed in the same order (i = 0, 1, ... over the hidden inputs, then the skip inputs,
// then the bias) whatever the block it is computed in; so a stream's tokens do not depend on the
// batch it runs in, the thread count or the instruction set.
#include "saffu/generate.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
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

constexpr int64_t kColumnPad = 64;  // the input-major output weights have Vp = V rounded up

// ---- Output products ----

// The output weights input-major (LD, Vp), columns past V zero: a hidden input adds one row.
std::vector<float> input_major(const float* output_t, int64_t V, int64_t LD, int64_t Vp) {
  std::vector<float> by_input(LD * Vp, 0.0f);
  constexpr int64_t kTile = 32;
  for (int64_t v0 = 0; v0 < V; v0 += kTile)
    for (int64_t i0 = 0; i0 < LD; i0 += kTile)
      for (int64_t v = v0; v < std::min(v0 + kTile, V); ++v)
        for (int64_t i = i0; i < std::min(i0 + kTile, LD); ++i)
          by_input[i * Vp + v] = output_t[v * LD + i];
  return by_input;
}

// out[r, v0 + c] = sum_i H[r, i] OI[i, v0 + c] for R rows and C columns, summed in order of i.
template <int R, int C>
inline __attribute__((always_inline)) void product_tile(const float* H, int64_t LD,
                                                        const float* OI, int64_t Vp, int64_t v0,
                                                        float* out) {
  float acc[R][C] = {};
  for (int64_t i = 0; i < LD; ++i) {
    const float* o = OI + i * Vp + v0;
    for (int r = 0; r < R; ++r) {
      const float h = H[r * LD + i];
      for (int c = 0; c < C; ++c) acc[r][c] += h * o[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[r * Vp + v0 + c] = acc[r][c];
}

// out (rows, Vp) = H (rows, LD) OI (LD, Vp), in tiles of R rows by C columns (Vp % C == 0).
template <int R, int C>
inline __attribute__((always_inline)) void products_in_tiles(const float* H, int64_t rows,
                                                             int64_t LD, const float* OI,
                                                             int64_t Vp, float* out) {
  for (int64_t v0 = 0; v0 < Vp; v0 += C) {
    int64_t r = 0;
    for (; r + R <= rows; r += R) product_tile<R, C>(H + r * LD, LD, OI, Vp, v0, out + r * Vp);
    for (; r < rows; ++r) product_tile<1, C>(H + r * LD, LD, OI, Vp, v0, out + r * Vp);
  }
}

#if SAFFU_ISA_DISPATCH
SAFFU_TARGET("avx512f")
void products_avx512(const float* H, int64_t rows, int64_t LD, const float* OI, int64_t Vp,
                     float* out) {
  products_in_tiles<4, 64>(H, rows, LD, OI, Vp, out);  // 16 zmm accumulators
}

SAFFU_TARGET("avx2")
void products_avx2(const float* H, int64_t rows, int64_t LD, const float* OI, int64_t Vp,
                   float* out) {
  products_in_tiles<4, 16>(H, rows, LD, OI, Vp, out);  // 8 ymm accumulators
}
#endif

void products_baseline(const float* H, int64_t rows, int64_t LD, const float* OI, int64_t Vp,
                       float* out) {
  products_in_tiles<4, 8>(H, rows, LD, OI, Vp, out);
}

// The blocking differs by instruction set; the sums, and so the results, do not.
void products(const float* H, int64_t rows, int64_t LD, const float* OI, int64_t Vp, float* out) {
#if SAFFU_ISA_DISPATCH
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx512) return products_avx512(H, rows, LD, OI, Vp, out);
  if (avx2) return products_avx2(H, rows, LD, OI, Vp, out);
#endif
  products_baseline(H, rows, LD, OI, Vp, out);
}

// ---- Sampling ----

// exp(x) for x <= 0 in float64 to about 1 ulp (Cephes' rational approximation after a
// Cody-Waite reduction), branch-free so that the loop over the vocabulary vectorizes; 0 below
// -708 (and for -inf, the banned tokens).
SAFFU_DOUBLE_CLONES void exp_nonpositive(const double* x, double* e, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const double t = std::max(x[j], -708.0);
    const double k = (t * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
    const double r = (t - k * 6.93145751953125e-1) - k * 1.42860682030941723212e-6;
    const double rr = r * r;
    const double p = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr +
                          9.99999999999999999910e-1);
    const double q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr +
                      2.27265548208155028766e-1) * rr + 2.00000000000000000009e0;
    const double m = 1.0 + 2.0 * (p / (q - p));
    const int64_t bits = (static_cast<int64_t>(k) + 1023) << 52;  // 2^k
    double scale;
    std::memcpy(&scale, &bits, sizeof scale);
    e[j] = x[j] < -708.0 ? 0.0 : m * scale;
  }
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

// Draws tokens from logits as saffu.model.sample_token does with rng.choice, given the uniform
// draw u: tokens sorted by descending logit (ties: lower id first), the first top_k kept,
// probabilities exp((l - l_max) / temperature) normalized, the shortest prefix of mass >= top_p
// kept and renormalized, and the token where the cumulative probability first exceeds u.
//
// Only a short sorted prefix is needed: the tokens are grouped in buckets of 1/16 nat of
// (l - l_max) / temperature, which follow the sorted order, and only the bucket where the
// cumulative mass crosses a threshold is sorted. The masses are summed in another order than
// NumPy's (differences of about 1e-16 relative, which decide a draw only when u lies that close
// to a CDF boundary); with top_k, the sorted top k are summed exactly as NumPy sums them.
class Sampler {
 public:
  Sampler(int64_t V, const Sampling& sampling, const bool* banned)
      : V_(V), s_(sampling), banned_(banned), l_(V), x_(V), e_(V), bucket_(V),
        mass_(kBuckets + 1), count_(kBuckets + 1) {}

  int32_t sample(const float* logits, double u) {
    double top = -std::numeric_limits<double>::infinity();
    int32_t argmax = 0;
    for (int64_t v = 0; v < V_; ++v) {
      l_[v] = banned_[v] ? -std::numeric_limits<double>::infinity() : logits[v];
      if (l_[v] > top) {
        top = l_[v];
        argmax = static_cast<int32_t>(v);
      }
    }
    if (s_.temperature == 0.0) return argmax;
    require(top > -std::numeric_limits<double>::infinity(),
            "every token is banned: there is nothing to sample");
    for (int64_t v = 0; v < V_; ++v) x_[v] = (l_[v] - top) / s_.temperature;
    exp_nonpositive(x_.data(), e_.data(), V_);
    fill_buckets();
    if (s_.top_k > 0 && s_.top_k < V_) return sample_top_k(u);
    return sample_all(u);
  }

 private:
  static constexpr int kBuckets = 1024;  // of 1/16 nat each; the last one holds the rest
  static constexpr double kPerNat = 16.0;

  void fill_buckets() {
    std::fill(mass_.begin(), mass_.end(), 0.0);
    std::fill(count_.begin(), count_.end(), 0);
    total_ = 0.0;
    for (int64_t v = 0; v < V_; ++v) {
      int b = kBuckets;  // banned: in no bucket
      if (!banned_[v]) {
        const double depth = -x_[v] * kPerNat;
        b = depth < kBuckets - 1 ? static_cast<int>(depth) : kBuckets - 1;
        total_ += e_[v];
      }
      bucket_[v] = static_cast<int16_t>(b);
      mass_[b] += e_[v];
      ++count_[b];
    }
  }

  // The tokens of bucket b in sorted order (descending logit, then ascending id), appended.
  void append_sorted(int b, std::vector<int32_t>& tokens) const {
    const size_t first = tokens.size();
    for (int64_t v = 0; v < V_; ++v)
      if (bucket_[v] == b) tokens.push_back(static_cast<int32_t>(v));
    std::sort(tokens.begin() + first, tokens.end(), [&](int32_t a, int32_t c) {
      return l_[a] > l_[c] || (l_[a] == l_[c] && a < c);
    });
  }

  // The first token (in sorted order, among the first `limit` tokens of buckets < stop_bucket
  // and the sorted `tail` of bucket stop_bucket) where the cumulative mass exceeds threshold;
  // the last such token with positive mass if rounding leaves the threshold unreached.
  int32_t locate(double threshold, int stop_bucket, const std::vector<int32_t>& tail) {
    double cumulative = 0.0;
    int32_t last = -1;
    for (int b = 0; b < stop_bucket; ++b) {
      if (count_[b] == 0) continue;
      if (cumulative + mass_[b] <= threshold) {
        cumulative += mass_[b];
        continue;
      }
      members_.clear();
      append_sorted(b, members_);
      for (int32_t v : members_) {
        cumulative += e_[v];
        if (e_[v] > 0.0) last = v;
        if (cumulative > threshold) return v;
      }
    }
    for (int32_t v : tail) {
      cumulative += e_[v];
      if (e_[v] > 0.0) last = v;
      if (cumulative > threshold) return v;
    }
    if (last < 0) {  // rounding: the threshold is at the total mass; take the last token
      for (int b = stop_bucket - 1; b >= 0 && last < 0; --b) {
        if (count_[b] == 0) continue;
        members_.clear();
        append_sorted(b, members_);
        for (int32_t v : members_)
          if (e_[v] > 0.0) last = v;
      }
    }
    return last;
  }

  // No top-k: probabilities e / total over every token.
  int32_t sample_all(double u) {
    kept_.clear();
    if (s_.top_p <= 0.0) return locate(u * total_, kBuckets, kept_);
    // The nucleus: the shortest sorted prefix whose mass reaches top_p * total.
    const double target = s_.top_p * total_;
    double cumulative = 0.0;
    int stop_bucket = kBuckets;
    for (int b = 0; b < kBuckets && stop_bucket == kBuckets; ++b) {
      if (count_[b] == 0) continue;
      if (cumulative + mass_[b] < target) {
        cumulative += mass_[b];
        continue;
      }
      members_.clear();
      append_sorted(b, members_);
      for (int32_t v : members_) {
        kept_.push_back(v);
        cumulative += e_[v];
        if (cumulative >= target) break;
      }
      if (cumulative >= target) {
        stop_bucket = b;
      } else {
        kept_.clear();
      }
    }
    if (stop_bucket == kBuckets) return locate(u * cumulative, kBuckets, kept_);
    return locate(u * cumulative, stop_bucket, kept_);
  }

  // With top-k: the k first tokens sorted, then NumPy's arithmetic on them, step by step.
  int32_t sample_top_k(double u) {
    kept_.clear();
    int64_t seen = 0;
    for (int b = 0; b < kBuckets && seen < s_.top_k; ++b) {
      if (count_[b] == 0) continue;
      append_sorted(b, kept_);
      seen += count_[b];
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
  const bool* banned_;
  std::vector<double> l_, x_, e_;
  std::vector<int16_t> bucket_;
  std::vector<double> mass_;
  std::vector<int64_t> count_;
  double total_ = 0.0;
  std::vector<int32_t> members_, kept_;
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
  const std::vector<float>& by_input;  // (LD, Vp)
  int64_t Vp;
  HiddenSteps& steps;
  int32_t* out;
  int32_t* lengths;
};

// logits[v] = (products[v] + sum over the last lags tokens' nonzero bits x_j of x_j S[j, v]) +
// o[v], in the order SaffuModel.logits sums them (the skip rows in CSR order: lag 1's bits
// ascending, then lag 2's, ...).
void add_skip_and_bias(const Batch& batch, const std::vector<int32_t>& tokens, int64_t n,
                       const float* products, float* skip, float* logits) {
  const GenerationModel& m = batch.model;
  const int64_t V = batch.prompts.V, bits = batch.prompts.bits;
  if (m.lags > 0) {
    std::fill(skip, skip + V, 0.0f);
    for (int64_t k = 1; k <= m.lags && k <= n; ++k) {
      const float* x = batch.prompts.E + static_cast<int64_t>(tokens[n - k]) * bits;
      for (int64_t j = 0; j < bits; ++j) {
        if (x[j] == 0.0f) continue;
        const float* row = m.skip_weight + ((k - 1) * bits + j) * V;
        for (int64_t v = 0; v < V; ++v) skip[v] += x[j] * row[v];
      }
    }
    for (int64_t v = 0; v < V; ++v) logits[v] = (products[v] + skip[v]) + m.bias[v];
  } else {
    for (int64_t v = 0; v < V; ++v) logits[v] = products[v] + m.bias[v];
  }
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
  std::vector<float> H(count * LD), logit_products(count * batch.Vp), skip(V), logits(V);
  std::vector<int64_t> active;
  Sampler sampler(V, batch.sampling, batch.model.banned);
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
    products(H.data(), static_cast<int64_t>(active.size()), LD, batch.by_input.data(), batch.Vp,
             logit_products.data());
    for (size_t a = 0; a < active.size(); ++a) {
      const int64_t s = active[a], b = first + s;
      add_skip_and_bias(batch, tokens[s], static_cast<int64_t>(tokens[s].size()),
                        logit_products.data() + a * batch.Vp, skip.data(), logits.data());
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
                    int32_t* lengths, int n_threads) {
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

  const int64_t V = prompts.V, LD = model.n_layers * model.D;
  const int64_t Vp = (V + kColumnPad - 1) / kColumnPad * kColumnPad;
  const std::vector<float> by_input = input_major(model.output_t, V, LD, Vp);
  HiddenSteps steps(prompts.E, V, prompts.bits, model.layers, model.n_layers, model.aggregation,
                    model.D, streams);
  const Batch batch{prompts, model, sampling, uniforms, max_tokens, starts, positions,
                    by_input, Vp, steps, out, lengths};
  parallel_ranges(streams, effective_threads(n_threads, streams),
                  [&](int, int64_t first, int64_t last) { run_streams(batch, first, last); });
}

}  // namespace saffu
