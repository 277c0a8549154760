// Checks of the Python-free core against hand-computed values (no framework): each kernel on a
// tiny input, the argument checks, and an exception thrown inside a worker thread reaching the
// caller. Built with -DSAFFU_BUILD_TESTS=ON; run by tests/test_cpp_core.py. Exit status 0 iff
// every check passes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "saffu/cooc.hpp"
#include "saffu/generate.hpp"
#include "saffu/output.hpp"
#include "saffu/parallel.hpp"
#include "saffu/pretokenize.hpp"
#include "saffu/saffu_pass.hpp"
#include "saffu/solve.hpp"

namespace {

int failures = 0;

void check(bool ok, const char* what, int line) {
  if (!ok) {
    ++failures;
    std::printf("FAIL line %d: %s\n", line, what);
  }
}

#define CHECK(cond) check((cond), #cond, __LINE__)

// Checks that `expr` throws an exception of type `type` (and nothing else).
#define CHECK_THROWS(type, expr)                 \
  do {                                           \
    bool thrown = false;                         \
    try {                                        \
      expr;                                      \
    } catch (const type&) {                      \
      thrown = true;                             \
    } catch (...) {                              \
    }                                            \
    check(thrown, "throws " #type ": " #expr, __LINE__); \
  } while (0)

template <typename T, typename U>
bool near(const std::vector<T>& actual, const std::vector<U>& expected, double tol = 1e-6) {
  if (actual.size() != expected.size()) return false;
  for (size_t i = 0; i < actual.size(); ++i)
    if (!(std::fabs(static_cast<double>(actual[i]) - static_cast<double>(expected[i])) <= tol))
      return false;
  return true;
}

constexpr int kRadial = static_cast<int>(saffu::ContextKind::kRadial);
constexpr int kBlock = static_cast<int>(saffu::ContextKind::kBlock);
constexpr int kDocument = static_cast<int>(saffu::ContextKind::kDocument);
constexpr int kSum = static_cast<int>(saffu::Aggregation::kSum);
constexpr int kCat = static_cast<int>(saffu::Aggregation::kCat);

void test_cooc_dense_onehot() {
  const std::vector<float> X = {1, 2, 3, 4, 5, 6};  // (3, 2)
  const std::vector<int64_t> targets = {2, 0, 2};
  std::vector<double> FT(3 * 2, 0.0);
  saffu::cooc_dense_onehot(FT.data(), 3, 2, X.data(), targets.data(), 3, 1);
  CHECK(near(FT, std::vector<double>{3, 4, 0, 0, 6, 8}));
  // Several threads (the grouped visit) give the same bits.
  std::vector<double> X64(64 * 3), FT1(5 * 3, 0.0), FT4(5 * 3, 0.0);
  std::vector<int64_t> many(64);
  for (int m = 0; m < 64; ++m) {
    many[m] = (m * 7) % 5;
    for (int j = 0; j < 3; ++j) X64[m * 3 + j] = 1.0 / (1 + m + j);
  }
  saffu::cooc_dense_onehot(FT1.data(), 5, 3, X64.data(), many.data(), 64, 1);
  saffu::cooc_dense_onehot(FT4.data(), 5, 3, X64.data(), many.data(), 64, 4);
  CHECK(FT1 == FT4);
  const std::vector<int64_t> bad = {0, 3, 1};
  std::vector<double> untouched(3 * 2, 0.0);
  CHECK_THROWS(std::invalid_argument,
               saffu::cooc_dense_onehot(untouched.data(), 3, 2, X.data(), bad.data(), 3, 2));
  CHECK(near(untouched, std::vector<double>(6, 0.0)));
}

void test_cooc_sparse_onehot() {
  // Rows: {0: 1.5, 2: 2}, {}, {1: -1}; targets 1, 0, 1.
  const std::vector<int64_t> indptr = {0, 2, 2, 3}, indices = {0, 2, 1}, targets = {1, 0, 1};
  const std::vector<double> weights = {1.5, 2.0, -1.0};
  std::vector<double> FT(2 * 3, 0.0);
  saffu::cooc_sparse_onehot(FT.data(), 2, 3, indptr.data(), indices.data(), weights.data(), 3,
                            targets.data(), 3, 2);
  CHECK(near(FT, std::vector<double>{0, 0, 0, 1.5, -1, 2}));
  const std::vector<int64_t> decreasing = {0, 2, 1, 3}, short_end = {0, 1, 2, 2};
  CHECK_THROWS(std::invalid_argument,
               saffu::cooc_sparse_onehot(FT.data(), 2, 3, decreasing.data(), indices.data(),
                                         weights.data(), 3, targets.data(), 3, 1));
  CHECK_THROWS(std::invalid_argument,
               saffu::cooc_sparse_onehot(FT.data(), 2, 3, short_end.data(), indices.data(),
                                         weights.data(), 3, targets.data(), 3, 1));
}

void test_explicit_solve() {
  // Row (1, 3), alpha 1, D 2: C = 4, out = tau log(FT + 1) - shrink log(6).
  const std::vector<double> FT = {1, 3};
  std::vector<double> out(2);
  saffu::explicit_solve(FT.data(), 1, 2, out.data(), 1.0, 1.0, 1.0, 1);
  CHECK(near(out, std::vector<double>{std::log(2.0 / 6.0), std::log(4.0 / 6.0)}, 1e-12));
  std::vector<float> out32(2);
  saffu::explicit_solve(FT.data(), 1, 2, out32.data(), 1.0, 2.0, 0.5, 1);
  CHECK(near(out32, std::vector<double>{2 * std::log(2.0) - 0.5 * std::log(6.0),
                                        2 * std::log(4.0) - 0.5 * std::log(6.0)}));
}

void test_logsumexp_rows() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> logits = {0, 0, 1, nan}, bias = {0, std::log(3.0f)};
  std::vector<double> out(2);
  saffu::logsumexp_rows(logits.data(), 2, 2, bias.data(), out.data(), 2);
  CHECK(std::fabs(out[0] - std::log(4.0)) < 1e-6);
  CHECK(std::isnan(out[1]));
  CHECK_THROWS(std::invalid_argument,
               saffu::logsumexp_rows(logits.data(), 2, 0, bias.data(), out.data(), 1));
}

// Two documents "it's  a" and " a": pieces "it" "'s" " " " a" | " a" (ASCII classes by hand).
void test_bytelevel_pieces() {
  const std::string text = "it's  a a";
  std::vector<uint32_t> cp(text.begin(), text.end());
  std::vector<uint8_t> cls;
  for (char c : text)
    cls.push_back(c == ' ' ? saffu::kSpace : c == '\'' ? saffu::kOther : saffu::kLetter);
  const std::vector<int64_t> doc_starts = {0, 7, 9};
  std::vector<int64_t> bounds(10), counts(2);
  std::vector<int32_t> ids(9), first(9);
  saffu::bytelevel_pieces(cp.data(), cls.data(), 9, doc_starts.data(), 2, bounds.data(),
                          ids.data(), first.data(), counts.data());
  CHECK(counts[0] == 5 && counts[1] == 4);
  CHECK((std::vector<int64_t>(bounds.begin(), bounds.begin() + 6) ==
         std::vector<int64_t>{0, 2, 4, 5, 7, 9}));
  CHECK((std::vector<int32_t>(ids.begin(), ids.begin() + 5) == std::vector<int32_t>{0, 1, 2, 3, 3}));
  CHECK(first[3] == 3);
  const std::vector<int64_t> descending = {0, 9, 7, 9};  // checked before any document is read
  CHECK_THROWS(std::invalid_argument,
               saffu::bytelevel_pieces(cp.data(), cls.data(), 9, descending.data(), 3,
                                       bounds.data(), ids.data(), first.data(), counts.data()));
  cls[2] = 4;
  CHECK_THROWS(std::invalid_argument,
               saffu::bytelevel_pieces(cp.data(), cls.data(), 9, doc_starts.data(), 2,
                                       bounds.data(), ids.data(), first.data(), counts.data()));
}

// One document "a b c" (ids 0 1 2, positions 0 1 2); E rows (1, 0), (0, 2), (1, 1).
struct TinyCorpus {
  std::vector<int32_t> ids = {0, 1, 2}, pos = {0, 1, 2};
  std::vector<float> E = {1, 0, 0, 2, 1, 1};
  saffu::Corpus view() const { return {ids.data(), pos.data(), 3, E.data(), 3, 2}; }
};

void test_expert_stats() {
  const TinyCorpus tiny;
  // Radial 2: target 1 sees token 0 in slot 1; target 2 sees tokens 0, 1 in slots 0, 1.
  std::vector<double> FT(2 * 3 * 2, 0.0), T(2 * 3, 0.0);
  saffu::saffu_expert_stats(tiny.view(), kRadial, 2, FT.data(), T.data(), 2);
  CHECK(near(FT, std::vector<double>{0, 0, 0, 0, 1, 0, /* slot 1 */ 0, 0, 1, 0, 0, 2}));
  CHECK(near(T, std::vector<double>{0, 0, 1, 0, 1, 1}));
  // Block 2: target 1 sees token 0 in slot 0; target 2 sees tokens 0, 1 in slots 0, 1.
  std::fill(FT.begin(), FT.end(), 0.0);
  std::fill(T.begin(), T.end(), 0.0);
  saffu::saffu_expert_stats(tiny.view(), kBlock, 2, FT.data(), T.data(), 1);
  CHECK(near(FT, std::vector<double>{0, 0, 1, 0, 1, 0, /* slot 1 */ 0, 0, 0, 0, 0, 2}));
  CHECK(near(T, std::vector<double>{0, 1, 1, 0, 0, 1}));
}

void test_attention_stats() {
  // Radial 1: one valid slot (token t - 1) of weight 1, s = |E[ids[t - 1]]|^2: 1 + 4.
  const TinyCorpus tiny;
  const std::vector<float> UT(3 * 2, 0.0f), b(3, 0.0f), logz(3, 0.0f);
  std::vector<double> FT(1, 0.0);
  const double mass = saffu::saffu_attention_stats(tiny.view(), kRadial, 1, UT.data(), b.data(),
                                                   logz.data(), FT.data(), 1);
  CHECK(near(FT, std::vector<double>{5}));
  CHECK(std::fabs(mass - 5.0) < 1e-12);
}

void test_hidden_stats_and_forward() {
  const TinyCorpus tiny;
  const std::vector<float> W(4, 0.0f), codes(3, 1.0f);  // W (2, 2) = 0; codes (V, 1) = 1
  // Radial 2, sum: z_1 = E0 = (1, 0); target 2: s = (E0.E1, E1.E1) = (0, 4), s W = 0, so
  // a = (1/2, 1/2) and z_2 = (E0 + E1) / 2 = (0.5, 1).
  std::vector<float> out(2 * 2, -1.0f);
  CHECK(saffu::saffu_forward(tiny.view(), kRadial, 2, W.data(), kSum, nullptr, 0, 0, 3, out.data(),
                             2, 2) == 2);
  CHECK(near(out, std::vector<double>{1, 0, 0.5, 1}));
  std::vector<double> FT(2, 0.0);
  const double mass = saffu::saffu_hidden_stats(tiny.view(), kRadial, 2, W.data(), kSum,
                                                codes.data(), 1, FT.data(), 1);
  CHECK(near(FT, std::vector<double>{1.5, 1}));
  CHECK(std::fabs(mass - 2.5) < 1e-6);
  // Cat: z = (a_0 X_0, a_1 X_1), slot-major.
  std::vector<float> wide(2 * 4, -1.0f);
  saffu::saffu_forward(tiny.view(), kRadial, 2, W.data(), kCat, nullptr, 0, 0, 3, wide.data(), 2,
                       1);
  CHECK(near(wide, std::vector<double>{0, 0, 1, 0, 0.5, 0, 0, 1}));
  // Document, D = 0: z = S / |S|_1 with S the sum of the prefix: (1, 0), then (1, 2) / 3.
  saffu::saffu_forward(tiny.view(), kDocument, 1, W.data(), kSum, nullptr, 0, 0, 3, out.data(), 2,
                       2);
  CHECK(near(out, std::vector<double>{1, 0, 1.0 / 3, 2.0 / 3}));
  // Document, D = 2 with UT = I: h = softmax(z).
  const std::vector<float> identity = {1, 0, 0, 1};
  saffu::saffu_forward(tiny.view(), kDocument, 1, W.data(), kSum, identity.data(), 2, 2, 3,
                       out.data(), 2, 1);
  const double e = std::exp(1.0 / 3 - 2.0 / 3);
  CHECK(near(std::vector<float>(out.begin(), out.begin() + 2),
             std::vector<double>{e / (1 + e), 1 / (1 + e)}));
}

void test_pass_arguments_are_checked() {
  TinyCorpus tiny;
  const std::vector<float> W(4, 0.0f), codes(3, 1.0f);
  std::vector<double> FT(2 * 3 * 2, 0.0), T(2 * 3, 0.0);
  std::vector<float> out(2 * 2);
  // Unknown context kind and aggregation codes, and kinds a pass does not take.
  CHECK_THROWS(std::invalid_argument,
               saffu::saffu_expert_stats(tiny.view(), 7, 2, FT.data(), T.data(), 1));
  CHECK_THROWS(std::invalid_argument,
               saffu::saffu_expert_stats(tiny.view(), kDocument, 1, FT.data(), T.data(), 1));
  CHECK_THROWS(std::invalid_argument,
               saffu::saffu_forward(tiny.view(), -1, 2, W.data(), kSum, nullptr, 0, 0, 3,
                                    out.data(), 2, 1));
  CHECK_THROWS(std::invalid_argument,
               saffu::saffu_hidden_stats(tiny.view(), kRadial, 2, W.data(), 2, codes.data(), 1,
                                         FT.data(), 1));
  CHECK_THROWS(std::invalid_argument, saffu::context_model(kDocument, 2, false));
  CHECK_THROWS(std::invalid_argument, saffu::context_model(kRadial, 0, false));
  CHECK(saffu::context_width(saffu::context_model(kBlock, 3, true), kCat, 4) == 12);
  // Ranges: start/stop, output rows, token ids, positions.
  CHECK_THROWS(std::invalid_argument,
               saffu::saffu_forward(tiny.view(), kRadial, 2, W.data(), kSum, nullptr, 0, 0, 4,
                                    out.data(), 2, 1));
  CHECK_THROWS(std::invalid_argument,
               saffu::saffu_forward(tiny.view(), kRadial, 2, W.data(), kSum, nullptr, 0, 0, 3,
                                    out.data(), 1, 1));
  tiny.ids[1] = 3;
  CHECK_THROWS(std::invalid_argument,
               saffu::saffu_expert_stats(tiny.view(), kRadial, 2, FT.data(), T.data(), 1));
  tiny.ids[1] = 1;
  tiny.pos[2] = 3;
  CHECK_THROWS(std::invalid_argument,
               saffu::saffu_expert_stats(tiny.view(), kRadial, 2, FT.data(), T.data(), 1));
  CHECK(near(FT, std::vector<double>(FT.size(), 0.0)));
}

void test_worker_exceptions_reach_the_caller() {
  std::vector<int> done(4, 0);
  bool caught = false;
  try {
    saffu::parallel_ranges(8, 4, [&](int part, int64_t, int64_t) {
      if (part == 2) throw std::runtime_error("worker 2 failed");
      done[part] = 1;
    });
  } catch (const std::runtime_error& error) {
    caught = std::string(error.what()) == "worker 2 failed";
  }
  CHECK(caught);
  CHECK(done[0] == 1 && done[1] == 1 && done[2] == 0 && done[3] == 1);
  const auto bounds = saffu::split_range(10, 3);
  CHECK(bounds == (std::vector<int64_t>{0, 3, 6, 10}));
  CHECK(saffu::effective_threads(8, 3) == 3 && saffu::effective_threads(0, 5) == 1);
}

}  // namespace

// HiddenSteps, one target at a time, writes saffu_forward's rows bit for bit.
void test_hidden_steps_equal_forward() {
  const std::vector<int32_t> ids = {0, 3, 1, 4, 4, 2, 0, 1, 3}, pos = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<float> E = {1, 0, 0, 0.5f, 0.5f, 0, 0, 0, 1, 0, 1, 0, 0.25f, 0.25f, 0.5f};
  const saffu::Corpus c{ids.data(), pos.data(), 9, E.data(), 5, 3};
  const std::vector<float> W = {0.3f, -0.2f, 0.1f, 0.4f, 0.0f, -0.5f, 0.2f, 0.1f, 0.6f};
  std::vector<float> UT(2 * 9);
  for (size_t i = 0; i < UT.size(); ++i) UT[i] = std::sin(1.0f + static_cast<float>(i));
  struct Case { int kind, K, aggregation; int64_t Z; };
  for (const Case& m : {Case{kRadial, 3, kCat, 9}, Case{kBlock, 2, kSum, 3}, Case{kDocument, 1, kSum, 3}}) {
    std::vector<float> rows(8 * 2);
    saffu::saffu_forward(c, m.kind, m.K, W.data(), m.aggregation, UT.data(), 2, 0, 9, rows.data(),
                         8, 1);
    const saffu::LayerSpec layer{m.kind, m.K, W.data(), UT.data()};
    saffu::HiddenSteps steps(E.data(), 5, 3, &layer, 1, m.aggregation, 2, 1);
    std::vector<int32_t> positions(10);
    for (int j = 0; j < 10; ++j) positions[j] = j;
    bool equal = true;
    for (int64_t n = 1; n < 9; ++n) {
      float h[2];
      steps.next(0, ids.data(), positions.data(), n, h);
      equal = equal && h[0] == rows[(n - 1) * 2] && h[1] == rows[(n - 1) * 2 + 1];
    }
    CHECK(equal);
  }
}

// Greedy generation follows the largest logit, stops at the stop token, never draws a banned
// token, and refuses to sample when every token is banned.
void test_generate() {
  const TinyCorpus tiny;  // one prompt: tokens 0, 1, 2
  const std::vector<float> W(1, 0.0f), UT = {1, 0, 0, 1}, output_t(3 * 2, 0.0f);
  const saffu::LayerSpec layer{kRadial, 1, W.data(), UT.data()};
  std::vector<float> bias = {0.0f, 2.0f, 1.0f};
  bool banned[3] = {false, false, false};
  const saffu::GenerationModel model{&layer, 1, kSum, 2, output_t.data(), nullptr, 0, bias.data(),
                                     banned};
  const std::vector<double> uniforms(4, 0.5);
  std::vector<int32_t> out(4, 7), lengths(1, 7);
  for (const int64_t cache_bytes : {int64_t{0}, int64_t{1} << 20}) {  // the radial1 rows cached
    saffu::saffu_generate(tiny.view(), model, saffu::Sampling{0.0, 0, 0.0, 2}, uniforms.data(), 1,
                          4, out.data(), lengths.data(), cache_bytes, 1);
    CHECK(lengths[0] == 4 && out == std::vector<int32_t>({1, 1, 1, 1}));
  }
  banned[1] = true;  // then token 2, the stop token, is the most likely
  saffu::saffu_generate(tiny.view(), model, saffu::Sampling{1.0, 0, 0.0, 2}, uniforms.data(), 1, 4,
                        out.data(), lengths.data(), 1 << 20, 1);
  CHECK(lengths[0] <= 4 && std::count(out.begin(), out.end(), 1) == 0);
  banned[0] = banned[2] = true;
  CHECK_THROWS(std::invalid_argument,
               saffu::saffu_generate(tiny.view(), model, saffu::Sampling{1.0, 0, 0.0, 2},
                                     uniforms.data(), 1, 4, out.data(), lengths.data(), 0, 1));
  CHECK_THROWS(std::invalid_argument,
               saffu::saffu_generate(tiny.view(), model, saffu::Sampling{0.0, 0, 0.0, 2},
                                     uniforms.data(), 1, 4, out.data(), lengths.data(), -1, 1));
}

int main() {
  test_cooc_dense_onehot();
  test_cooc_sparse_onehot();
  test_explicit_solve();
  test_logsumexp_rows();
  test_bytelevel_pieces();
  test_expert_stats();
  test_attention_stats();
  test_hidden_stats_and_forward();
  test_pass_arguments_are_checked();
  test_worker_exceptions_reach_the_caller();
  test_hidden_steps_equal_forward();
  test_generate();
  if (failures == 0) std::printf("core_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
