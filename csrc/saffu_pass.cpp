// Fused SAFFU passes: per target, build the context window, compare, attend, aggregate and
// (optionally) apply the hidden softmax, then accumulate statistics or write one row.
// Contracts: docs/internals.md, section "SAFFU passes". Nothing of size (tokens x features) is
// materialized: each thread walks its own static range of token indices, and statistics go to
// per-thread partial sums that are added in thread order (deterministic for a fixed count).
#include "saffu/saffu_pass.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "saffu/check.hpp"
#include "saffu/parallel.hpp"
#include "saffu/vecmath.hpp"

namespace saffu {
namespace {

[[noreturn]] void unknown_code(const char* what, int code) {
  throw std::invalid_argument(std::string("unknown ") + what + " code " + std::to_string(code));
}

// The document model has no window (and no attention); radial and block models have both.
bool is_document(ContextKind kind) {
  switch (kind) {
    case ContextKind::kRadial:
    case ContextKind::kBlock:
      return false;
    case ContextKind::kDocument:
      return true;
  }
  unknown_code("context kind", static_cast<int>(kind));
}

Aggregation aggregation_of(int code) {
  switch (static_cast<Aggregation>(code)) {
    case Aggregation::kSum:
    case Aggregation::kCat:
      return static_cast<Aggregation>(code);
  }
  throw std::invalid_argument("aggregation must be 0 (sum) or 1 (cat)");
}

// Length Z of the aggregated context z: bits (sum) or K * bits (cat).
int64_t width_of(const ContextModel& m, Aggregation aggregation, int64_t bits) {
  switch (aggregation) {
    case Aggregation::kSum:
      return bits;
    case Aggregation::kCat:
      return m.K * bits;
  }
  unknown_code("aggregation", static_cast<int>(aggregation));
}

// ---- Softmax and sparse rows ----

// In-place, numerically stable softmax of x[0..n), n >= 1.
SAFFU_AVX2_CLONES void softmax(float* x, int64_t n) {
  const float top = maximum(x, n);
  for (int64_t i = 0; i < n; ++i) x[i] = exp_nonpositive(x[i] - top);
  const float inverse = 1.0f / sum(x, n);
  for (int64_t i = 0; i < n; ++i) x[i] *= inverse;
}

// The nonzero entries of each row of a (rows, cols) matrix (cipher vectors and label codes have
// few: a code with p set bits has p).
class SparseRows {
 public:
  SparseRows(const float* X, int64_t rows, int64_t cols) : first_(rows + 1, 0) {
    constexpr int64_t kSpan = 32;  // a branch-free test per span skips the zero runs quickly
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = X + r * cols;
      for (int64_t i0 = 0; i0 < cols; i0 += kSpan) {
        const int64_t i1 = std::min(i0 + kSpan, cols);
        uint32_t any = 0;
        for (int64_t i = i0; i < i1; ++i) {
          uint32_t bits;
          std::memcpy(&bits, row + i, sizeof bits);
          any |= bits & 0x7fffffffu;  // -0.0 counts as zero
        }
        if (any == 0) continue;
        for (int64_t i = i0; i < i1; ++i) {
          if (row[i] == 0.0f) continue;
          column_.push_back(i);
          value_.push_back(row[i]);
        }
      }
      first_[r + 1] = static_cast<int64_t>(column_.size());
    }
  }

  template <typename Fn>
  void for_each_nonzero(int64_t row, Fn&& fn) const {
    for (int64_t p = first_[row]; p < first_[row + 1]; ++p) fn(column_[p], value_[p]);
  }

  // Σ_i X[row, i] y[i] over the nonzero entries of the row.
  float dot(int64_t row, const float* y) const {
    float total = 0.0f;
    for (int64_t p = first_[row]; p < first_[row + 1]; ++p) total += value_[p] * y[column_[p]];
    return total;
  }

  // Σ_i X[a, i] X[b, i], as dot(a, X[b]) sums it: adding the products in order of i where both entries are nonzero
  // (the others add zeros, which change no sum): the columns of a row are ascending.
  float dot_rows(int64_t a, int64_t b) const {
    float total = 0.0f;
    int64_t q = first_[b];
    const int64_t q_end = first_[b + 1];
    for (int64_t p = first_[a]; p < first_[a + 1] && q < q_end; ++p) {
      while (q < q_end && column_[q] < column_[p]) ++q;
      if (q < q_end && column_[q] == column_[p]) total += value_[p] * value_[q];
    }
    return total;
  }

 private:
  std::vector<int64_t> first_, column_;
  std::vector<float> value_;
};

// ---- Context windows ----

// The window of target t. For both radial and block models the valid slots are the contiguous
// range [begin, end), slot k holds corpus index t - end + k, and the pivot is slot end - 1
// (the most recent token t - 1).
struct Window {
  int64_t t;
  int begin;
  int end;

  Window(const Corpus& c, const ContextModel& m, int64_t target) : t(target) {
    switch (m.kind) {
      case ContextKind::kRadial:  // the last K tokens, masked before the document start
        begin = static_cast<int>(std::max<int64_t>(0, m.K - c.pos[t]));
        end = m.K;
        return;
      case ContextKind::kBlock:  // the positions of the current block seen so far
        begin = 0;
        end = (c.pos[t] - 1) % m.K + 1;
        return;
      case ContextKind::kDocument:
        throw std::invalid_argument("the document model has no window");
    }
    unknown_code("context kind", static_cast<int>(m.kind));
  }
  int64_t index(int k) const { return t - end + k; }
};

// s_k = X_k · X_pivot on the valid slots, 0 elsewhere.
// The dot products read the nonzero bits of both vectors only (`vectors` holds those of E).
void comparisons(const Corpus& c, const SparseRows& vectors, const ContextModel& m, const Window& w,
                 float* s) {
  const int64_t pivot = c.ids[w.t - 1];
  std::fill(s, s + m.K, 0.0f);
  for (int k = w.begin; k < w.end; ++k) s[k] = vectors.dot_rows(c.ids[w.index(k)], pivot);
}

// Calls fn(window) for every target in [begin, end) (attention context models only).
template <typename Fn>
void for_each_window(const Corpus& c, const ContextModel& m, int64_t begin, int64_t end, Fn&& fn) {
  for (int64_t t = begin; t < end; ++t)
    if (c.is_target(t)) fn(Window(c, m, t));
}

// Per-thread encoder of one context model: turns each target into its aggregated context z and
// the support of z (the indices j where z_j may be nonzero, each listed once; z is 0 elsewhere).
// Cipher vectors have few nonzero bits, so the support is short even when Z = K * bits is wide.
class ContextEncoder {
 public:
  ContextEncoder(const Corpus& c, const SparseRows& vectors, ContextModel m, const float* W,
                 Aggregation aggregation)
      : c_(c), vectors_(vectors), m_(m), document_(is_document(m.kind)), W_(W),
        aggregation_(aggregation), s_(m.K), a_(m.K), z_(width_of(m, aggregation, c.bits)),
        in_support_(z_.size(), 0),
        document_sum_(c.bits) {}

  // Calls fn(t, z, support) for every target t in [begin, end), in order.
  template <typename Fn>
  void for_each_context(int64_t begin, int64_t end, Fn&& fn) {
    if (begin >= end) return;
    if (document_) {
      // A range may start inside a document: first sum the prefix from the document start.
      for (int64_t j = begin - c_.pos[begin]; j < begin; ++j) track_document(j);
    }
    for (int64_t t = begin; t < end; ++t) {
      if (c_.is_target(t)) {
        if (document_) {
          document_mean();
        } else {
          const Window w(c_, m_, t);
          attend(w);
          aggregate(w);
        }
        fn(t, z_.data(), support_);
      }
      if (document_) track_document(t);
    }
  }

 private:
  // a = softmax over the valid slots of (s W), 0 elsewhere.
  void attend(const Window& w) {
    comparisons(c_, vectors_, m_, w, s_.data());
    std::fill(a_.begin(), a_.end(), 0.0f);
    const int valid = w.end - w.begin;
    for (int kp = w.begin; kp < w.end; ++kp)
      axpy(s_[kp], W_ + static_cast<int64_t>(kp) * m_.K + w.begin, a_.data() + w.begin, valid);
    softmax(a_.data() + w.begin, valid);
  }

  // z = Σ_k a_k X_k (sum) or concat_k a_k X_k (cat, slot-major), adding the nonzero bits only.
  void aggregate(const Window& w) {
    for (int64_t j : support_) {  // the previous target's entries back to 0
      z_[j] = 0.0f;
      in_support_[j] = 0;
    }
    support_.clear();
    for (int k = w.begin; k < w.end; ++k) {
      const int64_t offset = aggregation_ == Aggregation::kCat ? k * c_.bits : 0;
      const float weight = a_[k];
      vectors_.for_each_nonzero(c_.ids[w.index(k)], [&](int64_t b, float x) {
        const int64_t j = offset + b;
        if (!in_support_[j]) {
          in_support_[j] = 1;
          support_.push_back(j);
        }
        z_[j] += weight * x;
      });
    }
  }

  // Running (double) sum of the document's vectors, reset at each document start.
  void track_document(int64_t j) {
    if (c_.pos[j] == 0) std::fill(document_sum_.begin(), document_sum_.end(), 0.0);
    const float* x = c_.vector_at(j);
    for (int64_t b = 0; b < c_.bits; ++b) document_sum_[b] += x[b];
  }

  // z = the document sum divided by its L1 norm (0 if the norm is 0). Every z_j is written, so
  // the support is every index.
  void document_mean() {
    double mass = 0.0;
    for (double v : document_sum_) mass += std::fabs(v);
    const double scale = mass > 0.0 ? 1.0 / mass : 0.0;
    for (int64_t b = 0; b < c_.bits; ++b) z_[b] = static_cast<float>(document_sum_[b] * scale);
    if (support_.empty())
      for (int64_t b = 0; b < c_.bits; ++b) support_.push_back(b);
  }

  const Corpus& c_;
  const SparseRows& vectors_;
  ContextModel m_;
  bool document_;
  const float* W_;
  Aggregation aggregation_;
  std::vector<float> s_, a_, z_;
  std::vector<char> in_support_;
  std::vector<int64_t> support_;
  std::vector<double> document_sum_;
};

// h = Σ_{j in support} z_j rows[j] (rows (Z, D) row-major), the hot loop of the hidden layer.
SAFFU_AVX2_CLONES void add_rows(const float* z, const int64_t* support, int64_t n, const float* rows,
                                int64_t D, float* h) {
  std::fill(h, h + D, 0.0f);
  for (int64_t p = 0; p < n; ++p) axpy(z[support[p]], rows + support[p] * D, h, D);
}

// h = softmax(UT z), shared by the threads. UT (D, Z) is stored input-major so that each
// entry z_j of the support adds one contiguous row.
class HiddenLayer {
 public:
  HiddenLayer(const float* UT, int64_t D, int64_t Z) : D_(D), by_input_(Z * D) {
    constexpr int64_t kTile = 32;  // transpose in tiles: a plain loop misses the cache per element
    for (int64_t i0 = 0; i0 < D; i0 += kTile)
      for (int64_t j0 = 0; j0 < Z; j0 += kTile)
        for (int64_t i = i0; i < std::min(i0 + kTile, D); ++i)
          for (int64_t j = j0; j < std::min(j0 + kTile, Z); ++j) by_input_[j * D + i] = UT[i * Z + j];
  }

  int64_t width() const { return D_; }

  void apply(const float* z, const std::vector<int64_t>& support, float* h) const {
    add_rows(z, support.data(), static_cast<int64_t>(support.size()), by_input_.data(), D_, h);
    softmax(h, D_);
  }

  // pre += x_j U[:, j] (double accumulator of D entries).
  void add_input(int64_t j, float x_j, double* pre) const {
    const float* column = by_input_.data() + j * D_;
    for (int64_t i = 0; i < D_; ++i) pre[i] += static_cast<double>(x_j) * column[i];
  }

 private:
  int64_t D_;
  std::vector<float> by_input_;
};

// ---- Passes ----

// One zeroed buffer per thread, added into the output in thread order. The calling thread
// allocates the buffers (a worker thread's allocations come from its own arena, fresh memory on
// every call; the caller's can be memory freed earlier: saffu._processes.reusing_freed_memory)
// and each worker zeroes its own.
class Partials {
 public:
  Partials(int parts, int64_t size) : size_(size) {
    parts_.reserve(parts);
    for (int p = 0; p < parts; ++p) parts_.push_back(std::unique_ptr<double[]>(new double[size]));
  }
  double* allocate(int p) {
    std::fill_n(parts_[p].get(), size_, 0.0);
    return parts_[p].get();
  }
  void add_into(double* out, int n_threads) const {
    parallel_ranges(size_, effective_threads(n_threads, size_), [&](int, int64_t b, int64_t e) {
      for (const auto& part : parts_)
        for (int64_t i = b; i < e; ++i) out[i] += part[i];
    });
  }
  const double* part(int p) const { return parts_[p].get(); }
  int count() const { return static_cast<int>(parts_.size()); }

 private:
  int64_t size_;
  std::vector<std::unique_ptr<double[]>> parts_;
};

double sum_in_order(const std::vector<double>& values) {
  double total = 0.0;
  for (double v : values) total += v;
  return total;
}

// Partials are laid out (V, K, bits + 1), the last column counting, so that the K slots of one
// target update one contiguous block; the reduction scatters them to FT (K, V, bits), T (K, V).
void expert_stats(const Corpus& c, ContextModel m, double* FT, double* T, int n_threads) {
  const int parts = effective_threads(n_threads, c.n);
  const int K = m.K;
  const int64_t bits = c.bits, stride = bits + 1;
  Partials partials(parts, c.V * K * stride);
  const SparseRows vectors(c.E, c.V, c.bits);
  parallel_ranges(c.n, parts, [&](int p, int64_t begin, int64_t end) {
    double* stats = partials.allocate(p);
    for_each_window(c, m, begin, end, [&](const Window& w) {
      double* block = stats + static_cast<int64_t>(c.ids[w.t]) * K * stride;
      for (int k = w.begin; k < w.end; ++k) {
        double* row = block + k * stride;
        vectors.for_each_nonzero(c.ids[w.index(k)], [&](int64_t b, float x) { row[b] += x; });
        row[bits] += 1.0;
      }
    });
  });
  parallel_ranges(c.V, effective_threads(n_threads, c.V), [&](int, int64_t y_begin, int64_t y_end) {
    for (int p = 0; p < partials.count(); ++p) {
      const double* stats = partials.part(p);
      for (int64_t y = y_begin; y < y_end; ++y) {
        for (int k = 0; k < K; ++k) {
          const double* row = stats + (y * K + k) * stride;
          double* ft = FT + (k * c.V + y) * bits;
          for (int64_t b = 0; b < bits; ++b) ft[b] += row[b];
          T[k * c.V + y] += row[bits];
        }
      }
    }
  });
}

// The per-position experts regrouped by target token: row (y, k) holds expert_UT[k, y, :] and
// then expert_b[k, y], so the K experts consulted for one target are one contiguous block
// (the (K, V, bits) input layout would touch K pages far apart per target).
class ExpertsByTarget {
 public:
  ExpertsByTarget(const float* UT, const float* b, const float* logz, int K, int64_t V, int64_t bits)
      : K_(K), V_(V), bits_(bits), rows_(V * K * (bits + 1)), logz_(logz) {
    for (int k = 0; k < K; ++k) {
      for (int64_t y = 0; y < V; ++y) {
        float* row = rows_.data() + (y * K + k) * (bits + 1);
        std::copy(UT + (k * V + y) * bits, UT + (k * V + y + 1) * bits, row);
        row[bits] = b[k * V + y];
      }
    }
  }

  // log P̂_k(y | x) for the input token v, whose nonzero bits `vectors` holds.
  float log_likelihood(int k, int64_t y, int64_t v, const SparseRows& vectors) const {
    const float* row = rows_.data() + (y * K_ + k) * (bits_ + 1);
    return vectors.dot(v, row) + row[bits_] - logz_[k * V_ + v];
  }

 private:
  int K_;
  int64_t V_, bits_;
  std::vector<float> rows_;
  const float* logz_;  // (K, V)
};

double attention_stats(const Corpus& c, ContextModel m, const ExpertsByTarget& experts, double* FT,
                       int n_threads) {
  const int parts = effective_threads(n_threads, c.n);
  const int K = m.K;
  Partials pairs(parts, static_cast<int64_t>(K) * K);
  const SparseRows vectors(c.E, c.V, c.bits);
  std::vector<double> mass(parts, 0.0);
  parallel_ranges(c.n, parts, [&](int p, int64_t begin, int64_t end) {
    double* ft = pairs.allocate(p);
    double thread_mass = 0.0;
    std::vector<float> s(K), weight(K);
    std::vector<double> s_wide(K);
    for_each_window(c, m, begin, end, [&](const Window& w) {
      const int64_t y = c.ids[w.t];
      comparisons(c, vectors, m, w, s.data());
      // weight_k ∝ P̂_k(y | x_k): the expert log-likelihoods, normalized over the valid slots.
      for (int k = w.begin; k < w.end; ++k)
        weight[k] = experts.log_likelihood(k, y, c.ids[w.index(k)], vectors);
      softmax(weight.data() + w.begin, w.end - w.begin);
      for (int k = w.begin; k < w.end; ++k) {
        s_wide[k] = s[k];
        thread_mass += s_wide[k];
      }
      for (int k_out = w.begin; k_out < w.end; ++k_out) {
        double* row = ft + static_cast<int64_t>(k_out) * K;
        const double weight_out = weight[k_out];
        for (int k_in = w.begin; k_in < w.end; ++k_in) row[k_in] += weight_out * s_wide[k_in];
      }
    });
    mass[p] = thread_mass;
  });
  pairs.add_into(FT, n_threads);
  return sum_in_order(mass);
}

double hidden_stats(const Corpus& c, ContextModel m, const float* W, Aggregation aggregation,
                    const float* codes, int64_t D, double* FT, int n_threads) {
  const int parts = effective_threads(n_threads, c.n);
  const int64_t Z = width_of(m, aggregation, c.bits);
  const SparseRows label_codes(codes, c.V, D);
  const SparseRows vectors(c.E, c.V, c.bits);
  Partials cooc(parts, D * Z);
  std::vector<double> mass(parts, 0.0);
  parallel_ranges(c.n, parts, [&](int p, int64_t begin, int64_t end) {
    double* ft = cooc.allocate(p);
    double thread_mass = 0.0;
    ContextEncoder encoder(c, vectors, m, W, aggregation);
    encoder.for_each_context(begin, end, [&](int64_t t, const float* z, const std::vector<int64_t>& support) {
      // A support covering much of z (the document model's: all of it) is cheaper as one
      // contiguous loop.
      const bool dense = static_cast<int64_t>(support.size()) * 4 >= Z;
      label_codes.for_each_nonzero(c.ids[t], [&](int64_t i, float code) {
        double* row = ft + i * Z;
        if (dense)
          for (int64_t j = 0; j < Z; ++j) row[j] += static_cast<double>(code) * z[j];
        else
          for (int64_t j : support) row[j] += static_cast<double>(code) * z[j];
      });
      if (dense) {
        thread_mass += sum(z, Z);
      } else {
        for (int64_t j : support) thread_mass += z[j];
      }
    });
    mass[p] = thread_mass;
  });
  cooc.add_into(FT, n_threads);
  return sum_in_order(mass);
}

// h of the document model without a dense product per target: z = S / |S|_1 with S the sum of
// the document's vectors so far, so U z = (U S) / |S|_1, and U S grows by U x_j (the nonzero
// bits of one vector) per token. |S|_1 is the running sum of the vectors' masses when no entry
// of E is negative (always, unless a cipher was thawed and trained), else it is taken from S.
class DocumentState {
 public:
  DocumentState(const SparseRows& vectors, bool nonnegative, const HiddenLayer& hidden,
                int64_t bits)
      : vectors_(vectors), nonnegative_(nonnegative), hidden_(hidden),
        pre_(hidden.width(), 0.0), document_sum_(nonnegative ? 0 : bits, 0.0) {}

  // Adds token j of the corpus (a document start resets the sums first).
  void track(const Corpus& c, int64_t j) {
    if (c.pos[j] == 0) {
      std::fill(pre_.begin(), pre_.end(), 0.0);
      std::fill(document_sum_.begin(), document_sum_.end(), 0.0);
      mass_ = 0.0;
    }
    vectors_.for_each_nonzero(c.ids[j], [&](int64_t b, float x) {
      hidden_.add_input(b, x, pre_.data());
      if (nonnegative_)
        mass_ += x;
      else
        document_sum_[b] += x;
    });
  }

  // h (D) of the next target, from the tokens tracked so far.
  void write(float* row) {
    if (!nonnegative_) {
      mass_ = 0.0;
      for (double v : document_sum_) mass_ += std::fabs(v);
    }
    const double scale = mass_ > 0.0 ? 1.0 / mass_ : 0.0;
    const int64_t D = hidden_.width();
    for (int64_t i = 0; i < D; ++i) row[i] = static_cast<float>(pre_[i] * scale);
    softmax(row, D);
  }

 private:
  const SparseRows& vectors_;
  bool nonnegative_;
  const HiddenLayer& hidden_;
  std::vector<double> pre_, document_sum_;
  double mass_ = 0.0;
};

bool all_nonnegative(const Corpus& c) {
  return std::all_of(c.E, c.E + c.V * c.bits, [](float x) { return x >= 0.0f; });
}

// Writes h of the document model for each target of [begin, end), one row each.
void document_hidden(const Corpus& c, const SparseRows& vectors, bool nonnegative,
                     const HiddenLayer& hidden, int64_t begin, int64_t end, float* row) {
  DocumentState state(vectors, nonnegative, hidden, c.bits);
  if (begin < end)  // a range may start inside a document: first add the document's prefix
    for (int64_t j = begin - c.pos[begin]; j < begin; ++j) state.track(c, j);
  for (int64_t t = begin; t < end; ++t) {
    if (c.is_target(t)) {
      state.write(row);
      row += hidden.width();
    }
    state.track(c, t);
  }
}

// Writes one row per target of [start, stop): h = softmax(UT z) when D >= 1, else z itself.
// Threads own disjoint token ranges; each one's first row is the count of targets before it.
int64_t forward(const Corpus& c, ContextModel m, const float* W, Aggregation aggregation,
                const float* UT, int64_t D, int64_t start, int64_t stop, float* out,
                int n_threads) {
  const int64_t n = stop - start;
  const int64_t Z = width_of(m, aggregation, c.bits);
  const int64_t width = D > 0 ? D : Z;
  const HiddenLayer hidden(UT, D, Z);
  const int parts = effective_threads(n_threads, n);
  const auto bounds = split_range(n, parts);
  std::vector<int64_t> first_row(parts + 1, 0);
  for (int p = 0; p < parts; ++p) {
    int64_t targets = 0;
    for (int64_t t = start + bounds[p]; t < start + bounds[p + 1]; ++t) targets += c.is_target(t);
    first_row[p + 1] = first_row[p] + targets;
  }
  const SparseRows vectors(c.E, c.V, c.bits);
  const bool document = is_document(m.kind);
  const bool nonnegative = document && all_nonnegative(c);
  parallel_ranges(n, parts, [&](int p, int64_t begin, int64_t end) {
    float* row = out + first_row[p] * width;
    if (document && D > 0)
      return document_hidden(c, vectors, nonnegative, hidden, start + begin, start + end, row);
    ContextEncoder encoder(c, vectors, m, W, aggregation);
    encoder.for_each_context(start + begin, start + end,
                             [&](int64_t, const float* z, const std::vector<int64_t>& support) {
      if (D > 0)
        hidden.apply(z, support, row);
      else
        std::copy(z, z + Z, row);
      row += width;
    });
  });
  return first_row[parts];
}

// ---- Argument checks ----

// "name[index] = value", for messages.
std::string at(const char* name, int64_t index, int64_t value) {
  return std::string(name) + "[" + std::to_string(index) + "] = " + std::to_string(value);
}

// Throws for the first token of [first, stop) that breaks the rules of check_documents.
[[noreturn]] void report_bad_token(const Corpus& c, int64_t first, int64_t stop) {
  for (int64_t t = first; t < stop; ++t) {
    const int64_t p = c.pos[t];
    if (p < 0 || p > t || (t > first && p != 0 && p != c.pos[t - 1] + 1))
      throw std::invalid_argument(at("pos", t, p) +
                                  " is inconsistent: positions must be 0 at each document start "
                                  "(<sod>) and increase by 1 inside a document");
    if (c.ids[t] < 0 || c.ids[t] >= c.V)
      throw std::invalid_argument(at("ids", t, c.ids[t]) + " is out of range [0, " +
                                  std::to_string(c.V) + ") (V = rows of E)");
  }
  throw std::logic_error("report_bad_token: no bad token");
}

// The tokens that the targets of [start, stop) read lie in [first, stop) with
// first = start - pos[start]. There, ids must lie in [0, V) and positions count 0, 1, 2, ...
// from each document start, so that every window stays inside the corpus and every vector
// inside E (the same checks as saffu.kernels, on the same range).
void check_documents(const Corpus& c, int64_t start, int64_t stop) {
  if (start >= stop) return;
  require(c.pos[start] >= 0 && c.pos[start] <= start,
          at("pos", start, c.pos[start]) + " must lie in [0, " + std::to_string(start) + "]");
  const int64_t first = start - c.pos[start];
  // Branch-free scan (it vectorizes). After a valid pos[first] <= first, each position being 0
  // or one more than the previous one keeps pos[t] <= t; ids are compared unsigned, so that a
  // negative id is out of range too.
  const auto id_bound = static_cast<uint32_t>(std::min<int64_t>(c.V, int64_t{1} << 31));
  bool bad = c.pos[first] < 0 || c.pos[first] > first ||
             static_cast<uint32_t>(c.ids[first]) >= id_bound;
  for (int64_t t = first + 1; t < stop; ++t) {
    const auto p = static_cast<uint32_t>(c.pos[t]);
    bad |= (c.pos[t] < 0) | ((p != 0) & (p != static_cast<uint32_t>(c.pos[t - 1]) + 1u)) |
           (static_cast<uint32_t>(c.ids[t]) >= id_bound);
  }
  if (bad) report_bad_token(c, first, stop);
}

}  // namespace

// ---- Incremental forward (generation) ----

struct HiddenSteps::Impl {
  struct Layer {
    ContextModel m;
    const float* W;
    HiddenLayer hidden;
  };
  // One growing document: an encoder per attention model, a running state per document model.
  struct Stream {
    Corpus corpus{};
    std::vector<std::unique_ptr<ContextEncoder>> encoders;
    std::vector<std::unique_ptr<DocumentState>> documents;
    std::vector<int64_t> tracked;  // tokens added to each document state
  };

  Impl(const Corpus& model, const LayerSpec* specs, int n_layers, Aggregation aggregation,
       int64_t D, int64_t streams)
      : model(model), vectors(model.E, model.V, model.bits),
        nonnegative(std::any_of(specs, specs + n_layers,
                                [](const LayerSpec& l) {
                                  return is_document(static_cast<ContextKind>(l.kind));
                                }) &&
                    all_nonnegative(model)),  // read by document models only
        aggregation(aggregation), D(D), streams(streams) {
    for (int l = 0; l < n_layers; ++l) {
      const ContextModel m = context_model(specs[l].kind, specs[l].K, false);
      layers.push_back(Layer{m, specs[l].W, HiddenLayer(specs[l].UT, D, width_of(m, aggregation, model.bits))});
    }
  }

  void start(Stream& s, const int32_t* doc, const int32_t* pos) {
    s.corpus = Corpus{doc, pos, 0, model.E, model.V, model.bits};
    for (const Layer& layer : layers) {
      const bool document = is_document(layer.m.kind);
      s.encoders.push_back(document ? nullptr : std::make_unique<ContextEncoder>(
          s.corpus, vectors, layer.m, layer.W, aggregation));
      s.documents.push_back(document ? std::make_unique<DocumentState>(
          vectors, nonnegative, layer.hidden, model.bits) : nullptr);
      s.tracked.push_back(0);
    }
  }

  Corpus model;
  SparseRows vectors;
  bool nonnegative;
  Aggregation aggregation;
  int64_t D;
  std::vector<Layer> layers;
  std::vector<Stream> streams;
};

HiddenSteps::HiddenSteps(const float* E, int64_t V, int64_t bits, const LayerSpec* layers,
                         int n_layers, int aggregation, int64_t D, int64_t streams) {
  require(D >= 1, "D must be >= 1");
  impl_ = std::make_unique<Impl>(Corpus{nullptr, nullptr, 0, E, V, bits}, layers, n_layers,
                                 aggregation_of(aggregation), D, streams);
}

HiddenSteps::~HiddenSteps() = default;

void HiddenSteps::next(int64_t stream, const int32_t* doc, const int32_t* pos, int64_t n,
                       float* h) {
  Impl& impl = *impl_;
  Impl::Stream& s = impl.streams[stream];
  if (s.encoders.empty()) impl.start(s, doc, pos);
  s.corpus.n = n + 1;
  for (size_t l = 0; l < impl.layers.size(); ++l) {
    float* row = h + static_cast<int64_t>(l) * impl.D;
    if (s.documents[l]) {
      for (; s.tracked[l] < n; ++s.tracked[l]) s.documents[l]->track(s.corpus, s.tracked[l]);
      s.documents[l]->write(row);
    } else {
      s.encoders[l]->for_each_context(n, n + 1, [&](int64_t, const float* z,
                                                     const std::vector<int64_t>& support) {
        impl.layers[l].hidden.apply(z, support, row);
      });
    }
  }
}

void check_corpus_range(const Corpus& c, int64_t start, int64_t stop) {
  check_documents(c, start, stop);
}

ContextModel context_model(int kind, int K, bool attention_only) {
  const char* allowed = attention_only ? "kind must be 0 (radial) or 1 (block)"
                                       : "kind must be 0 (radial), 1 (block) or 2 (document)";
  const auto model = ContextModel{static_cast<ContextKind>(kind), K};
  switch (model.kind) {
    case ContextKind::kRadial:
    case ContextKind::kBlock:
      require(K >= 1, "K must be >= 1 (and 1 for the document model)");
      return model;
    case ContextKind::kDocument:
      require(!attention_only, allowed);
      require(K == 1, "K must be >= 1 (and 1 for the document model)");
      return model;
  }
  throw std::invalid_argument(allowed);
}

int64_t context_width(const ContextModel& m, int aggregation, int64_t bits) {
  return width_of(m, aggregation_of(aggregation), bits);
}

void saffu_expert_stats(const Corpus& c, int kind, int K, double* FT, double* T, int n_threads) {
  const ContextModel m = context_model(kind, K, true);
  check_documents(c, 0, c.n);
  expert_stats(c, m, FT, T, n_threads);
}

double saffu_attention_stats(const Corpus& c, int kind, int K, const float* expert_UT,
                             const float* expert_b, const float* expert_logz, double* FT,
                             int n_threads) {
  const ContextModel m = context_model(kind, K, true);
  check_documents(c, 0, c.n);
  const ExpertsByTarget experts(expert_UT, expert_b, expert_logz, K, c.V, c.bits);
  return attention_stats(c, m, experts, FT, n_threads);
}

double saffu_hidden_stats(const Corpus& c, int kind, int K, const float* W, int aggregation,
                          const float* codes, int64_t D, double* FT, int n_threads) {
  const ContextModel m = context_model(kind, K, false);
  const Aggregation a = aggregation_of(aggregation);
  check_documents(c, 0, c.n);
  return hidden_stats(c, m, W, a, codes, D, FT, n_threads);
}

int64_t saffu_forward(const Corpus& c, int kind, int K, const float* W, int aggregation,
                      const float* UT, int64_t D, int64_t start, int64_t stop, float* out,
                      int64_t out_rows, int n_threads) {
  const ContextModel m = context_model(kind, K, false);
  const Aggregation a = aggregation_of(aggregation);
  require(D >= 0, "D must be >= 0");
  require(0 <= start && start <= stop && stop <= c.n, "need 0 <= start <= stop <= len(ids)");
  check_documents(c, start, stop);
  int64_t targets = 0;
  for (int64_t t = start; t < stop; ++t) targets += c.is_target(t);
  require(out_rows >= targets,
          "out must have shape (m, D or Z) with m >= the number of targets in [start, stop)");
  return forward(c, m, W, a, UT, D, start, stop, out, n_threads);
}

}  // namespace saffu
