// Byte-level BPE pre-tokenization (csrc/pretokenize.cpp; contract: docs/internals.md,
// "Pre-tokenizer").
#pragma once

#include <cstdint>

namespace saffu {

// Character classes of the pre-tokenizer's pattern, one per code point.
enum PieceClass : uint8_t { kLetter = 0, kNumber = 1, kSpace = 2, kOther = 3 };

// Splits documents into the pieces of the GPT-2 pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (leftmost alternative first) and numbers the distinct pieces in order of first appearance.
//
// code_points (n,) and classes (n,) (a PieceClass each) hold the documents one after another;
// document j is [doc_starts[j], doc_starts[j + 1]) of d + 1 ascending offsets from 0 to n. Pieces
// cover every document and never cross one's end. Writes piece_bounds (n + 1,): piece p is
// [piece_bounds[p], piece_bounds[p + 1]); piece_ids (n,): the distinct piece of each piece;
// first_piece (n,): the first piece of each distinct piece; counts (2,): {pieces, distinct}.
// Only the first counts[0] (+ 1) and counts[1] entries are written. Bad offsets or classes throw
// std::invalid_argument.
void bytelevel_pieces(const uint32_t* code_points, const uint8_t* classes, int64_t n,
                      const int64_t* doc_starts, int64_t d, int64_t* piece_bounds,
                      int32_t* piece_ids, int32_t* first_piece, int64_t* counts);

}  // namespace saffu
