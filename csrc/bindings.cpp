// The pybind11 module saffu._core: the only file that includes Python. Each binding checks that
// the arrays' ndim and shapes agree (the core takes pointers and sizes), releases the GIL and
// calls the core (csrc/saffu/*.hpp), which checks index ranges. No conversion of any array
// (noconvert, C-contiguous): saffu.kernels validates dtypes and contents before calling here.
// The core's std::invalid_argument reaches Python as ValueError, std::bad_alloc as MemoryError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstddef>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "saffu/cooc.hpp"
#include "saffu/generate.hpp"
#include "saffu/output.hpp"
#include "saffu/pretokenize.hpp"
#include "saffu/saffu_pass.hpp"
#include "saffu/solve.hpp"

namespace py = pybind11;

namespace saffu {
namespace {

template <typename T>
using carray = py::array_t<T, py::array::c_style>;

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

template <typename T>
bool has_shape(const carray<T>& a, std::initializer_list<int64_t> shape) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  int axis = 0;
  for (int64_t extent : shape) ok = ok && a.shape(axis++) == extent;
  return ok;
}

template <typename T>
void require_shape(const carray<T>& a, std::initializer_list<int64_t> shape, const char* name) {
  require(has_shape(a, shape), std::string(name) + " has the wrong shape");
}

// Runs the core call without the GIL.
template <typename Fn>
auto without_gil(Fn&& fn) {
  py::gil_scoped_release release;
  return fn();
}

// ---- Co-occurrence and solve ----

template <typename T>
void cooc_dense_onehot_py(carray<double> FT, carray<T> X, carray<int64_t> targets, int n_threads) {
  require(FT.ndim() == 2 && X.ndim() == 2 && targets.ndim() == 1 && X.shape(1) == FT.shape(1) &&
              targets.shape(0) == X.shape(0),
          "cooc_dense_onehot: expected FT (N, D), X (n, D), targets (n,)");
  without_gil([&] {
    cooc_dense_onehot(FT.mutable_data(), FT.shape(0), FT.shape(1), X.data(), targets.data(),
                      X.shape(0), n_threads);
  });
}

template <typename T>
void cooc_sparse_onehot_py(carray<double> FT, carray<int64_t> indptr, carray<int64_t> indices,
                           carray<T> weights, carray<int64_t> targets, int n_threads) {
  require(FT.ndim() == 2 && indptr.ndim() == 1 && indices.ndim() == 1 && weights.ndim() == 1 &&
              targets.ndim() == 1 && indptr.shape(0) == targets.shape(0) + 1 &&
              weights.shape(0) == indices.shape(0),
          "cooc_sparse_onehot: expected FT (N, D), indptr (n + 1,), indices (nnz,), weights (nnz,), "
          "targets (n,)");
  without_gil([&] {
    cooc_sparse_onehot(FT.mutable_data(), FT.shape(0), FT.shape(1), indptr.data(), indices.data(),
                       weights.data(), indices.shape(0), targets.data(), targets.shape(0),
                       n_threads);
  });
}

template <typename Out>
void explicit_solve_py(carray<double> FT, carray<Out> out, double alpha, double tau, double shrink,
                       int n_threads) {
  require(FT.ndim() == 2 && has_shape(out, {FT.shape(0), FT.shape(1)}),
          "explicit_solve: expected FT (N, D) and out (N, D)");
  without_gil([&] {
    explicit_solve(FT.data(), FT.shape(0), FT.shape(1), out.mutable_data(), alpha, tau, shrink,
                   n_threads);
  });
}

template <typename T>
void def_cooc(py::module_& m) {
  m.def("cooc_dense_onehot", &cooc_dense_onehot_py<T>, py::arg("FT").noconvert(),
        py::arg("X").noconvert(), py::arg("targets").noconvert(), py::arg("n_threads"),
        "FT[targets[m], :] += X[m, :] for every row m (FT (N, D) f64, X (n, D), targets (n,) i64).");
  m.def("cooc_sparse_onehot", &cooc_sparse_onehot_py<T>, py::arg("FT").noconvert(),
        py::arg("indptr").noconvert(), py::arg("indices").noconvert(),
        py::arg("weights").noconvert(), py::arg("targets").noconvert(), py::arg("n_threads"),
        "FT[targets[m], indices[p]] += weights[p] for p in [indptr[m], indptr[m + 1]) (CSR rows).");
}

template <typename Out>
void def_solve(py::module_& m) {
  m.def("explicit_solve", &explicit_solve_py<Out>, py::arg("FT").noconvert(),
        py::arg("out").noconvert(), py::arg("alpha"), py::arg("tau"), py::arg("shrink"),
        py::arg("n_threads"),
        "out[i, j] = tau*log(FT[i, j] + alpha) - shrink*log(C_i + alpha*D), C_i = sum_j FT[i, j].");
}

// ---- SAFFU passes ----

Corpus corpus_of(const carray<int32_t>& ids, const carray<int32_t>& pos, const carray<float>& E) {
  require(ids.ndim() == 1 && pos.ndim() == 1 && ids.shape(0) == pos.shape(0),
          "ids and pos must be 1-D arrays of the same length");
  require(E.ndim() == 2, "E must be 2-D (V, bits)");
  return Corpus{ids.data(), pos.data(), ids.shape(0), E.data(), E.shape(0), E.shape(1)};
}

void expert_stats_py(const carray<int32_t>& ids, const carray<int32_t>& pos, int kind, int K,
                     const carray<float>& E, carray<double> FT, carray<double> T, int n_threads) {
  const Corpus c = corpus_of(ids, pos, E);
  context_model(kind, K, true);
  require_shape(FT, {K, c.V, c.bits}, "FT");
  require_shape(T, {K, c.V}, "T");
  without_gil([&] {
    saffu_expert_stats(c, kind, K, FT.mutable_data(), T.mutable_data(), n_threads);
  });
}

double attention_stats_py(const carray<int32_t>& ids, const carray<int32_t>& pos, int kind, int K,
                          const carray<float>& E, const carray<float>& expert_UT,
                          const carray<float>& expert_b, const carray<float>& expert_logz,
                          carray<double> FT, int n_threads) {
  const Corpus c = corpus_of(ids, pos, E);
  context_model(kind, K, true);
  require_shape(expert_UT, {K, c.V, c.bits}, "expert_UT");
  require_shape(expert_b, {K, c.V}, "expert_b");
  require_shape(expert_logz, {K, c.V}, "expert_logz");
  require_shape(FT, {K, K}, "FT");
  return without_gil([&] {
    return saffu_attention_stats(c, kind, K, expert_UT.data(), expert_b.data(), expert_logz.data(),
                                 FT.mutable_data(), n_threads);
  });
}

double hidden_stats_py(const carray<int32_t>& ids, const carray<int32_t>& pos, int kind, int K,
                       const carray<float>& E, const carray<float>& W, int aggregation,
                       const carray<float>& codes, carray<double> FT, int n_threads) {
  const Corpus c = corpus_of(ids, pos, E);
  const int64_t Z = context_width(context_model(kind, K, false), aggregation, c.bits);
  require_shape(W, {K, K}, "W");
  require(codes.ndim() == 2 && codes.shape(0) == c.V, "codes must have shape (V, D)");
  const int64_t D = codes.shape(1);
  require_shape(FT, {D, Z}, "FT");
  return without_gil([&] {
    return saffu_hidden_stats(c, kind, K, W.data(), aggregation, codes.data(), D,
                              FT.mutable_data(), n_threads);
  });
}

int64_t forward_py(const carray<int32_t>& ids, const carray<int32_t>& pos, int kind, int K,
                   const carray<float>& E, const carray<float>& W, int aggregation,
                   const carray<float>& UT, int64_t start, int64_t stop, carray<float> out,
                   int n_threads) {
  const Corpus c = corpus_of(ids, pos, E);
  const int64_t Z = context_width(context_model(kind, K, false), aggregation, c.bits);
  require_shape(W, {K, K}, "W");
  require(UT.ndim() == 2 && ((UT.shape(0) >= 1 && UT.shape(1) == Z) ||
                             (UT.shape(0) == 0 && UT.shape(1) == 0)),
          "UT must have shape (D, Z) with D >= 1, or (0, 0)");
  const int64_t D = UT.shape(0);
  require(out.ndim() == 2 && out.shape(1) == (D > 0 ? D : Z),
          "out must have shape (m, D or Z) with m >= the number of targets in [start, stop)");
  return without_gil([&] {
    return saffu_forward(c, kind, K, W.data(), aggregation, UT.data(), D, start, stop,
                         out.mutable_data(), out.shape(0), n_threads);
  });
}

template <typename Code, std::size_t n>
py::dict code_table(const std::array<NamedCode<Code>, n>& names) {
  py::dict table;
  for (const auto& entry : names) table[entry.name] = static_cast<int>(entry.code);
  return table;
}

void def_saffu_pass(py::module_& m) {
  m.attr("CONTEXT_KIND_CODES") = code_table(kContextKindNames);
  m.attr("AGGREGATION_CODES") = code_table(kAggregationNames);
  m.def("saffu_expert_stats", &expert_stats_py, py::arg("ids").noconvert(),
        py::arg("pos").noconvert(), py::arg("kind"), py::arg("K"), py::arg("E").noconvert(),
        py::arg("FT").noconvert(), py::arg("T").noconvert(), py::arg("n_threads"),
        "FT[k, y_t, :] += E[v], T[k, y_t] += 1 over targets t and valid slots k (in place).");
  m.def("saffu_attention_stats", &attention_stats_py, py::arg("ids").noconvert(),
        py::arg("pos").noconvert(), py::arg("kind"), py::arg("K"), py::arg("E").noconvert(),
        py::arg("expert_UT").noconvert(), py::arg("expert_b").noconvert(),
        py::arg("expert_logz").noconvert(), py::arg("FT").noconvert(), py::arg("n_threads"),
        "FT[k_out, k_in] += w[k_out] s[k_in] with w the experts' posterior of the target; "
        "returns the summed comparison mass.");
  m.def("saffu_hidden_stats", &hidden_stats_py, py::arg("ids").noconvert(),
        py::arg("pos").noconvert(), py::arg("kind"), py::arg("K"), py::arg("E").noconvert(),
        py::arg("W").noconvert(), py::arg("aggregation"), py::arg("codes").noconvert(),
        py::arg("FT").noconvert(), py::arg("n_threads"),
        "FT[i, :] += codes[y_t, i] z_t over targets t; returns the summed mass of z.");
  m.def("saffu_forward", &forward_py, py::arg("ids").noconvert(), py::arg("pos").noconvert(),
        py::arg("kind"), py::arg("K"), py::arg("E").noconvert(), py::arg("W").noconvert(),
        py::arg("aggregation"), py::arg("UT").noconvert(), py::arg("start"), py::arg("stop"),
        py::arg("out").noconvert(), py::arg("n_threads"),
        "Writes h = softmax(UT z) (or z when UT is (0, 0)) for each target of [start, stop); "
        "returns the number of rows.");
}

// ---- Output layer ----

void logsumexp_rows_py(const carray<float>& logits, const carray<float>& bias, carray<double> out,
                       int n_threads) {
  require(logits.ndim() == 2 && logits.shape(1) >= 1 && has_shape(bias, {logits.shape(1)}) &&
              has_shape(out, {logits.shape(0)}),
          "logsumexp_rows: expected logits (m, V >= 1), bias (V,), out (m,)");
  without_gil([&] {
    logsumexp_rows(logits.data(), logits.shape(0), logits.shape(1), bias.data(), out.mutable_data(),
                   n_threads);
  });
}

void logsumexp_rows_scaled_py(const carray<float>& logits, float scale, const carray<float>& bias,
                              carray<double> out, int n_threads) {
  require(logits.ndim() == 2 && logits.shape(1) >= 1 && has_shape(bias, {logits.shape(1)}) &&
              has_shape(out, {logits.shape(0)}),
          "logsumexp_rows_scaled: expected logits (m, V >= 1), bias (V,), out (m,)");
  without_gil([&] {
    logsumexp_rows_scaled(logits.data(), logits.shape(0), logits.shape(1), scale, bias.data(),
                          out.mutable_data(), n_threads);
  });
}

void def_output(py::module_& m) {
  m.def("logsumexp_rows", &logsumexp_rows_py, py::arg("logits").noconvert(),
        py::arg("bias").noconvert(), py::arg("out").noconvert(), py::arg("n_threads"),
        "out[i] = log(sum_j exp(logits[i, j] + bias[j])).");
  m.def("logsumexp_rows_scaled", &logsumexp_rows_scaled_py, py::arg("logits").noconvert(),
        py::arg("scale"), py::arg("bias").noconvert(), py::arg("out").noconvert(),
        py::arg("n_threads"),
        "out[i] = log(sum_j exp(float(scale * logits[i, j]) + bias[j])).");
}

// ---- Pre-tokenizer ----

void bytelevel_pieces_py(const carray<uint32_t>& code_points, const carray<uint8_t>& classes,
                         const carray<int64_t>& doc_starts, carray<int64_t> piece_bounds,
                         carray<int32_t> piece_ids, carray<int32_t> first_piece,
                         carray<int64_t> counts, int n_threads) {
  const int64_t n = code_points.ndim() == 1 ? code_points.shape(0) : -1;
  require(n >= 0 && has_shape(classes, {n}) && doc_starts.ndim() == 1 && doc_starts.shape(0) >= 1 &&
              has_shape(piece_bounds, {n + 1}) && has_shape(piece_ids, {n}) &&
              has_shape(first_piece, {n}) && has_shape(counts, {2}),
          "bytelevel_pieces: expected code_points (n,), classes (n,), doc_starts (d + 1,), "
          "piece_bounds (n + 1,), piece_ids (n,), first_piece (n,), counts (2,)");
  (void)n_threads;  // one pass over the text: a fraction of the tokenizer's merges
  without_gil([&] {
    bytelevel_pieces(code_points.data(), classes.data(), n, doc_starts.data(),
                     doc_starts.shape(0) - 1, piece_bounds.mutable_data(), piece_ids.mutable_data(),
                     first_piece.mutable_data(), counts.mutable_data());
  });
}

void def_pretokenize(py::module_& m) {
  m.def("bytelevel_pieces", &bytelevel_pieces_py, py::arg("code_points").noconvert(),
        py::arg("classes").noconvert(), py::arg("doc_starts").noconvert(),
        py::arg("piece_bounds").noconvert(), py::arg("piece_ids").noconvert(),
        py::arg("first_piece").noconvert(), py::arg("counts").noconvert(), py::arg("n_threads"),
        "The pieces of the GPT-2 pre-tokenizer pattern in each document, numbered by distinct "
        "piece in order of first appearance; counts = {pieces, distinct pieces}.");
}

// ---- Generation ----

void generate_py(const carray<int32_t>& ids, const carray<int32_t>& pos, const carray<int32_t>& kinds,
                 const carray<int32_t>& sizes, const carray<float>& E, const carray<float>& W,
                 int aggregation, const carray<float>& UT, const carray<float>& output_t,
                 const carray<float>& skip_weight, const carray<float>& bias,
                 const carray<bool>& banned, const carray<double>& uniforms, double temperature,
                 int64_t top_k, double top_p, int32_t stop_token, carray<int32_t> out,
                 carray<int32_t> lengths, int64_t cache_bytes, int n_threads) {
  const Corpus c = corpus_of(ids, pos, E);
  require(kinds.ndim() == 1 && has_shape(sizes, {kinds.shape(0)}) && kinds.shape(0) >= 1,
          "kinds and sizes must be 1-D arrays of the same length >= 1 (one per context model)");
  const int n_layers = static_cast<int>(kinds.shape(0));
  require(output_t.ndim() == 2 && output_t.shape(0) == c.V && output_t.shape(1) % n_layers == 0 &&
              output_t.shape(1) >= n_layers,
          "output_t must have shape (V, n_layers * D) with D >= 1");
  const int64_t D = output_t.shape(1) / n_layers;
  std::vector<LayerSpec> layers(n_layers);
  int64_t w_size = 0, ut_size = 0;
  for (int l = 0; l < n_layers; ++l) {
    const int K = sizes.data()[l];
    const int64_t Z = context_width(context_model(kinds.data()[l], K, false), aggregation, c.bits);
    layers[l] = LayerSpec{kinds.data()[l], K, nullptr, nullptr};
    w_size += static_cast<int64_t>(K) * K;
    ut_size += D * Z;
  }
  require(has_shape(W, {w_size}), "W must hold every context model's (K, K) weights, concatenated");
  require(has_shape(UT, {ut_size}), "UT must hold every context model's (D, Z) weights, concatenated");
  for (int l = 0, w = 0, u = 0; l < n_layers; ++l) {
    layers[l].W = W.data() + w;
    layers[l].UT = UT.data() + u;
    w += layers[l].K * layers[l].K;
    u += static_cast<int>(D * context_width(context_model(layers[l].kind, layers[l].K, false),
                                            aggregation, c.bits));
  }
  require(skip_weight.ndim() == 2 && skip_weight.shape(1) == c.V && skip_weight.shape(0) % c.bits == 0,
          "skip_weight must have shape (lags * bits, V)");
  require(has_shape(bias, {c.V}) && has_shape(banned, {c.V}), "bias and banned must have shape (V,)");
  require(uniforms.ndim() == 2 && has_shape(out, {uniforms.shape(0), uniforms.shape(1)}) &&
              has_shape(lengths, {uniforms.shape(0)}),
          "uniforms and out must have shape (streams, max_tokens), lengths (streams,)");
  const GenerationModel model{layers.data(), n_layers, aggregation, D, output_t.data(),
                              skip_weight.data(), skip_weight.shape(0) / c.bits, bias.data(),
                              banned.data()};
  const Sampling sampling{temperature, top_k, top_p, stop_token};
  without_gil([&] {
    saffu_generate(c, model, sampling, uniforms.data(), uniforms.shape(0), uniforms.shape(1),
                   out.mutable_data(), lengths.mutable_data(), cache_bytes, n_threads);
  });
}

void def_generate(py::module_& m) {
  m.def("saffu_generate", &generate_py, py::arg("ids").noconvert(), py::arg("pos").noconvert(),
        py::arg("kinds").noconvert(), py::arg("sizes").noconvert(), py::arg("E").noconvert(),
        py::arg("W").noconvert(), py::arg("aggregation"), py::arg("UT").noconvert(),
        py::arg("output_t").noconvert(), py::arg("skip_weight").noconvert(),
        py::arg("bias").noconvert(), py::arg("banned").noconvert(),
        py::arg("uniforms").noconvert(), py::arg("temperature"), py::arg("top_k"),
        py::arg("top_p"), py::arg("stop_token"), py::arg("out").noconvert(),
        py::arg("lengths").noconvert(), py::arg("cache_bytes"), py::arg("n_threads"),
        "Samples up to max_tokens tokens after each document of (ids, pos) into out (streams, "
        "max_tokens), -1 after each stream's last token; lengths (streams,). cache_bytes bounds "
        "the cached output rows of the layers read by the previous token alone.");
}

}  // namespace
}  // namespace saffu

PYBIND11_MODULE(_core, m) {
  m.doc() = "saffu compiled kernels (C++17). Call through saffu.kernels, which validates inputs.";
  saffu::def_cooc<float>(m);
  saffu::def_cooc<double>(m);
  saffu::def_solve<float>(m);
  saffu::def_solve<double>(m);
  saffu::def_saffu_pass(m);
  saffu::def_output(m);
  saffu::def_pretokenize(m);
  saffu::def_generate(m);
#ifdef VERSION_INFO
  m.attr("__version__") = VERSION_INFO;
#endif
}
