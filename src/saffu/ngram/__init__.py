"""N-gram language models on saffu token ids: the Kneser-Ney baselines (docs/ngram.md).

* :class:`NgramModel`: interpolated **modified** Kneser-Ney (Chen & Goodman; three discounts
  per order), estimated as KenLM's ``lmplz`` does (equal to it to 1e-4 log10 per token, see
  tests/test_ngram.py), stored in backoff form; reads and writes ARPA files
  (:meth:`NgramModel.from_arpa`, :meth:`NgramModel.to_arpa`) and saves to safetensors
  (:meth:`NgramModel.save`, :meth:`NgramModel.load`).
* :class:`KneserNey`: the single-discount interpolated Kneser-Ney of the earlier benchmarks
  (NLTK's estimate).
* :func:`interpolate_log_proba`, :func:`choose_interpolation_weight`: mix an n-gram model
  with a SAFFU model token by token, the weight chosen on dev.

Documents are ``[<sod>] + ids + [<eod>]`` (a :class:`saffu.corpus.TokenizedCorpus` or a list
of int arrays); every token after the ``<sod>`` is predicted, ``<eod>`` included.

    model = NgramModel.fit(train_corpus, vocab_size=tokenizer.vocab_size, order=3)
    model.score(dev_corpus)                  # {"perplexity": ..., "bits_per_char": ...}
    log_p = model.token_log_proba(dev_corpus)  # (dev_corpus.n_targets,) nats
"""

from saffu.ngram._data import NgramFormatError, Stream, as_stream
from saffu.ngram._kneser_ney import KneserNey, context_windows, kneser_ney_perplexity
from saffu.ngram._mix import choose_interpolation_weight, interpolate_log_proba, scores_from_log_proba
from saffu.ngram._model import FORMAT_VERSION, NgramModel, default_vocabulary
from saffu.ngram._modified import KENLM_FALLBACK, discounts_from_counts

__all__ = [
    "FORMAT_VERSION", "KENLM_FALLBACK", "KneserNey", "NgramFormatError", "NgramModel", "Stream",
    "as_stream", "choose_interpolation_weight", "context_windows", "default_vocabulary",
    "discounts_from_counts", "interpolate_log_proba", "kneser_ney_perplexity",
    "scores_from_log_proba",
]
