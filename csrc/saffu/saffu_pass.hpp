// Fused SAFFU passes (csrc/saffu_pass.cpp; contracts: docs/internals.md, "SAFFU passes").
// Arrays are C-contiguous and row-major; statistics are float64 and updated in place; every
// other float array is float32. Invalid codes, window lengths, token ids or positions throw
// std::invalid_argument before anything is written.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

namespace saffu {

// The integer codes every kernel backend takes (saffu.kinds mirrors them; tests/test_layers.py
// checks that they agree).
enum class ContextKind : int { kRadial = 0, kBlock = 1, kDocument = 2 };
enum class Aggregation : int { kSum = 0, kCat = 1 };

template <typename Code>
struct NamedCode {
  const char* name;
  Code code;
};
inline constexpr std::array<NamedCode<ContextKind>, 3> kContextKindNames{{
    {"radial", ContextKind::kRadial},
    {"block", ContextKind::kBlock},
    {"document", ContextKind::kDocument}}};
inline constexpr std::array<NamedCode<Aggregation>, 2> kAggregationNames{{
    {"sum", Aggregation::kSum}, {"cat", Aggregation::kCat}}};

// Whole documents as token ids with in-document positions (<sod> is 0; every token with
// pos >= 1 is a target), plus the cipher vectors E (V, bits).
struct Corpus {
  const int32_t* ids;  // (n,)
  const int32_t* pos;  // (n,)
  int64_t n;
  const float* E;  // (V, bits)
  int64_t V;
  int64_t bits;

  const float* vector_at(int64_t j) const { return E + static_cast<int64_t>(ids[j]) * bits; }
  bool is_target(int64_t t) const { return pos[t] >= 1; }
};

struct ContextModel {
  ContextKind kind;
  int K;  // window length (1 for the document model)
};

// The context model of a kind code and window length K: kind 0, 1 (or 2 unless attention_only),
// K >= 1 and K = 1 for the document model; else std::invalid_argument.
ContextModel context_model(int kind, int K, bool attention_only);

// Width Z of the aggregated context z: bits (sum) or K * bits (cat); an unknown aggregation
// code throws std::invalid_argument.
int64_t context_width(const ContextModel& m, int aggregation, int64_t bits);

// FT[k, y_t, :] += E[v], T[k, y_t] += 1 over targets t and valid slots k holding token v.
// kind 0 or 1; FT (K, V, bits), T (K, V).
void saffu_expert_stats(const Corpus& c, int kind, int K, double* FT, double* T, int n_threads);

// FT[k_out, k_in] += w[k_out] s[k_in], w the experts' posterior of the target; returns the
// summed comparison mass. kind 0 or 1; expert_UT (K, V, bits), expert_b and expert_logz (K, V),
// FT (K, K).
double saffu_attention_stats(const Corpus& c, int kind, int K, const float* expert_UT,
                             const float* expert_b, const float* expert_logz, double* FT,
                             int n_threads);

// FT[i, :] += codes[y_t, i] z_t over targets t; returns the summed mass of z.
// W (K, K), codes (V, D), FT (D, Z).
double saffu_hidden_stats(const Corpus& c, int kind, int K, const float* W, int aggregation,
                          const float* codes, int64_t D, double* FT, int n_threads);

// Writes h = softmax(UT z) (UT (D, Z), D >= 1), or z itself (D = 0, UT unused), as one row of
// out (out_rows, D or Z) per target of [start, stop), in order; returns the number of rows.
// Needs 0 <= start <= stop <= n and out_rows >= that number. W (K, K).
int64_t saffu_forward(const Corpus& c, int kind, int K, const float* W, int aggregation,
                      const float* UT, int64_t D, int64_t start, int64_t stop, float* out,
                      int64_t out_rows, int n_threads);

// Throws std::invalid_argument unless the tokens that the targets of [start, stop) read have ids
// in [0, V) and positions 0, 1, 2, ... from each document start (the checks of saffu_forward).
void check_corpus_range(const Corpus& c, int64_t start, int64_t stop);

// One context model of a stack: kind code, window length K, W (K, K) and UT (D, Z).
struct LayerSpec {
  int kind;
  int K;
  const float* W;
  const float* UT;
};

// The forward pass of saffu_forward over `streams` growing documents, one target at a time
// (generation): next() writes the hidden vectors of a document's next token and keeps each
// document's state between calls, so a step costs one window, not the whole document. The
// rows equal saffu_forward's bit for bit. E (V, bits), and every layer's W and UT (D >= 1), are
// read through their pointers for the object's lifetime.
class HiddenSteps {
 public:
  HiddenSteps(const float* E, int64_t V, int64_t bits, const LayerSpec* layers, int n_layers,
              int aggregation, int64_t D, int64_t streams);
  ~HiddenSteps();
  HiddenSteps(const HiddenSteps&) = delete;
  HiddenSteps& operator=(const HiddenSteps&) = delete;

  // h (n_layers * D: the layers' vectors, concatenated) of the token after doc[0..n), the
  // tokens of stream `stream` so far (doc[0] its first, n >= 1). Every call of one stream
  // passes the same doc and pos (pos[j] = j, at least n + 1 entries), with n never smaller
  // than before and doc[0..n) unchanged. Distinct streams may step on different threads.
  void next(int64_t stream, const int32_t* doc, const int32_t* pos, int64_t n, float* h);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace saffu
