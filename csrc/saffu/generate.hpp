// Sampling continuations of prompts (csrc/generate.cpp; contract: docs/internals.md,
// "Generation"). All streams of a batch run in one call: per step, each stream's hidden vectors
// come from its kept window state (HiddenSteps), each context model's part of the output
// products of the active streams is one blocked (streams x D) by (D x V) product (or, for a
// radial model, a cached row per window of tokens), and each stream samples its next token from
// its own uniforms, drawn up front by the caller.
#pragma once

#include <cstdint>

#include "saffu/saffu_pass.hpp"

namespace saffu {

// A fitted model as generation reads it. Arrays are C-contiguous float32 (banned: bool).
struct GenerationModel {
  const LayerSpec* layers;  // n_layers context models (W (K, K), UT (D, Z) each)
  int n_layers;
  int aggregation;
  int64_t D;                 // hidden width of each context model
  const float* output_t;     // (V, n_layers * D)
  const float* skip_weight;  // (lags * bits, V), input-major; unused when lags = 0
  int64_t lags;
  const float* bias;   // (V,)
  const bool* banned;  // (V,): never sampled
};

// temperature 0 is greedy (the first most likely token); top_k 0 keeps every token; top_p 0
// makes no nucleus cut (else 0 < top_p <= 1). stop_token ends a stream and is not written.
struct Sampling {
  double temperature;
  int64_t top_k;
  double top_p;
  int32_t stop_token;
};

// Samples up to max_tokens tokens after each document of `prompts` (one stream per document,
// in order; the documents' tokens and the cipher vectors E as in saffu_forward). uniforms
// (streams, max_tokens) holds each stream's draws in [0, 1): step j of stream b uses
// uniforms[b, j] (greedy sampling reads none). Writes out (streams, max_tokens), the tokens of
// each stream followed by -1, and lengths (streams,). Streams are split over n_threads; the
// tokens of a stream do not depend on the batch it is in or on the thread count. The output
// product parts of the layers whose hidden state is a function of the previous token alone (radial,
// K = 1) are cached per token within cache_bytes in all (0: none); caching changes no result.
void saffu_generate(const Corpus& prompts, const GenerationModel& model, const Sampling& sampling,
                    const double* uniforms, int64_t streams, int64_t max_tokens, int32_t* out,
                    int32_t* lengths, int64_t cache_bytes, int n_threads);

}  // namespace saffu
