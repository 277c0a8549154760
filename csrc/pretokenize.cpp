// Byte-level BPE pre-tokenization: the pieces of the GPT-2 pattern, and a hash set that numbers
// the distinct pieces, so a tokenizer runs its merges once per distinct piece instead of once
// per piece (a corpus of 1.2M pieces has ~34k distinct ones). Contract: docs/internals.md.
#include "saffu/pretokenize.hpp"

#include <cstring>
#include <limits>
#include <vector>

#include "saffu/check.hpp"

namespace saffu {
namespace {

constexpr uint32_t kApostrophe = 0x27;
constexpr uint32_t kBlank = 0x20;  // the optional prefix " ?" is U+0020 only

// Length of the contraction ('s 't 're 've 'm 'll 'd) at [i, end), 0 if there is none.
int64_t contraction_at(const uint32_t* cp, int64_t i, int64_t end) {
  if (cp[i] != kApostrophe || i + 1 >= end) return 0;
  const uint32_t a = cp[i + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 >= end) return 0;
  const uint32_t b = cp[i + 2];
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// End of the piece that starts at i < end.
int64_t piece_end(const uint32_t* cp, const uint8_t* cls, int64_t i, int64_t end) {
  if (const int64_t c = contraction_at(cp, i, end)) return i + c;
  int64_t run = i;  // first character of the run of one class
  if (cp[i] == kBlank && i + 1 < end && cls[i + 1] != kSpace) run = i + 1;
  const uint8_t k = cls[run];
  int64_t j = run + 1;
  while (j < end && cls[j] == k) ++j;
  if (k != kSpace) return j;  // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+"
  // \s+(?!\S) backs off one character when the run is followed by a non-space; a single
  // space before a non-space is \s+ itself.
  return (j == end || j - i == 1) ? j : j - 1;
}

uint64_t hash_of(const uint32_t* cp, int64_t length) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a over the code points, then a final mix
  for (int64_t k = 0; k < length; ++k) h = (h ^ cp[k]) * 0x100000001b3ULL;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  return h ^ (h >> 33);
}

// Open-addressing set of the distinct pieces (linear probing, load ≤ 1/2).
class PieceSet {
 public:
  PieceSet(const uint32_t* cp, const int64_t* bounds, int32_t* first_piece)
      : cp_(cp), bounds_(bounds), first_piece_(first_piece), slots_(1024, -1) {}

  // The distinct id of piece p, a new one if no earlier piece equals it.
  int32_t id_of(int64_t p) {
    const uint32_t* text = cp_ + bounds_[p];
    const int64_t length = bounds_[p + 1] - bounds_[p];
    const uint64_t h = hash_of(text, length);
    size_t slot = h & (slots_.size() - 1);
    for (;; slot = (slot + 1) & (slots_.size() - 1)) {
      const int32_t id = slots_[slot];
      if (id < 0) break;
      const int64_t q = first_piece_[id];
      if (hashes_[id] == h && bounds_[q + 1] - bounds_[q] == length &&
          std::memcmp(cp_ + bounds_[q], text, length * sizeof(uint32_t)) == 0)
        return id;
    }
    require(hashes_.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max()),
            "bytelevel_pieces: too many distinct pieces");
    const auto id = static_cast<int32_t>(hashes_.size());
    hashes_.push_back(h);
    first_piece_[id] = static_cast<int32_t>(p);
    slots_[slot] = id;
    if (2 * hashes_.size() > slots_.size()) grow();
    return id;
  }

  int64_t size() const { return static_cast<int64_t>(hashes_.size()); }

 private:
  void grow() {
    std::vector<int32_t> slots(2 * slots_.size(), -1);
    const size_t mask = slots.size() - 1;
    for (size_t id = 0; id < hashes_.size(); ++id) {
      size_t slot = hashes_[id] & mask;
      while (slots[slot] >= 0) slot = (slot + 1) & mask;
      slots[slot] = static_cast<int32_t>(id);
    }
    slots_.swap(slots);
  }

  const uint32_t* cp_;
  const int64_t* bounds_;
  int32_t* first_piece_;
  std::vector<int32_t> slots_;
  std::vector<uint64_t> hashes_;
};

}  // namespace

void bytelevel_pieces(const uint32_t* code_points, const uint8_t* classes, int64_t n,
                      const int64_t* doc_starts, int64_t d, int64_t* piece_bounds,
                      int32_t* piece_ids, int32_t* first_piece, int64_t* counts) {
  require(d >= 0 && n >= 0 && n < std::numeric_limits<int32_t>::max(),
          "bytelevel_pieces: expected n < 2^31 code points and d >= 0 documents");
  require(doc_starts[0] == 0 && doc_starts[d] == n,
          "bytelevel_pieces: doc_starts must run from 0 to the number of code points");
  for (int64_t j = 0; j < d; ++j)
    if (doc_starts[j] > doc_starts[j + 1])
      throw std::invalid_argument("bytelevel_pieces: doc_starts must ascend");
  for (int64_t i = 0; i < n; ++i)
    if (classes[i] > kOther) throw std::invalid_argument("bytelevel_pieces: a class is not 0-3");
  int64_t pieces = 0;
  piece_bounds[0] = 0;
  for (int64_t j = 0; j < d; ++j) {
    const int64_t begin = doc_starts[j], end = doc_starts[j + 1];
    for (int64_t i = begin; i < end; i = piece_bounds[pieces]) {
      piece_bounds[++pieces] = piece_end(code_points, classes, i, end);
    }
  }
  PieceSet set(code_points, piece_bounds, first_piece);
  for (int64_t p = 0; p < pieces; ++p) piece_ids[p] = set.id_of(p);
  counts[0] = pieces;
  counts[1] = set.size();
}

}  // namespace saffu
