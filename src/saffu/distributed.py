"""The passes of the explicit fit on a Dask cluster (``dask.distributed``).

A pass of :mod:`saffu.fit` only sums statistics over chunks of whole documents, so it splits
into independent tasks. The corpus lives on the workers as *shards* (groups of chunks, see
:class:`ShardedCorpus`); once per pass the model's current weights go to the workers; each
shard's statistics are accumulated where the shard lives; and the per-shard statistics are
added by a tree of tasks: groups of ``split_every`` neighbours, left to right, level by level.
The order of the additions depends only on the number of shards, so a distributed fit gives
the same weights, bit for bit, whatever the number of workers and the order in which tasks
finish. It differs from the single-process fit (one running sum over the chunks) by rounding
only (about 1e-15 relative in the statistics).

Fault tolerance is Dask's own: the tasks of a worker that dies run again on another worker.
The model goes to the workers as the result of a task (not scattered), so a lost copy is
rebuilt; shards read from files (:meth:`ShardedCorpus.from_files`, :func:`fit_files`) are
re-read the same way. Shards scattered from the client's memory (:meth:`ShardedCorpus.scatter`,
what ``SaffuModel.fit(..., client=client)`` does with documents) cannot be rebuilt: losing a
worker that holds one fails the fit, and Dask reports the lost keys.

Interruption: if waiting for a pass (or the encoding of files, or the token counts) is
interrupted (Ctrl-C, SIGTERM through the CLI) or fails, the tasks it submitted are cancelled
on the cluster before the exception goes on, so a user's cluster does not keep computing an
abandoned fit; the cluster itself is left running.

Example::

    from dask.distributed import Client
    client = Client("tcp://scheduler:8786")
    model = SaffuModel(config).fit(documents, client=client)  # encoded here, then scattered
    model = fit_files(SaffuModel(config), "corpus/", client)  # each worker reads its own files
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import operator
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import CancelledError
from itertools import chain
from typing import Any

import numpy as np

from saffu.errors import ComputationError, InvalidParameterError, MissingDependencyError

try:
    import dask
    from dask.distributed import Client, Future
    from dask.sizeof import sizeof
except ImportError as error:  # pragma: no cover - dask is an optional dependency
    raise MissingDependencyError.extra("saffu.distributed", "dask", error) from error

from saffu._backend import threads
from saffu.corpus import CHUNK_TOKENS, Corpus, Errors, PathLike, TokenizedCorpus
from saffu.fit import FitState, PassStatistics, Stage, accumulate_chunks
from saffu.model import SaffuModel
from saffu.tokenize import Tokenizer, make_tokenizer

SPLIT_EVERY = 2
"""Statistics added per reduction task: 2 is a binary tree (depth log2 of the shards)."""


class ShardedCorpus(TokenizedCorpus):
    """An encoded corpus whose shards live in the memory of a Dask cluster.

    Each shard is a :class:`TokenizedCorpus` of consecutive chunks, held by one worker as the
    result of a Dask future. Make one with :meth:`scatter` (from the client's memory) or
    :meth:`from_files` (workers read and encode files themselves), and pass it wherever a
    :class:`TokenizedCorpus` goes: ``SaffuModel(config).fit(sharded, client=client)`` runs
    every pass on the shards; iterating over it on the client fetches the shards one by one.

    Attributes:
        client: the Dask client the shards belong to.
        shards: one future per shard, in corpus order.
        n_tokens, n_documents, n_characters: as for :class:`TokenizedCorpus`.
    """

    def __init__(self, client: Client, shards: Sequence[Future], *, n_tokens: int,
                 n_documents: int, n_chunks: int, n_characters: int = 0) -> None:
        # The chunks are on the workers: the base class's in-memory list is not built.
        if not isinstance(client, Client):
            raise InvalidParameterError(
                f"client must be a dask.distributed.Client, got {type(client).__name__}")
        self.client = client
        self.shards = list(shards)
        self.n_tokens = int(n_tokens)
        self.n_documents = int(n_documents)
        self.n_characters = int(n_characters)
        self._n_chunks = int(n_chunks)

    @classmethod
    def scatter(cls, corpus: TokenizedCorpus, client: Client, *,
                shard_chunks: int = 1) -> ShardedCorpus:
        """Send ``corpus`` to the workers in shards of ``shard_chunks`` consecutive chunks.

        The chunk size is the corpus's own (``TokenizedCorpus.from_documents(...,
        chunk_tokens=...)``). Shards are spread over the workers round-robin.
        """
        _check_count("shard_chunks", shard_chunks)
        if isinstance(corpus, ShardedCorpus):
            raise InvalidParameterError("the corpus is sharded already")
        chunks = list(corpus.chunks())
        shards = [TokenizedCorpus(chunks[start:start + shard_chunks])
                  for start in range(0, len(chunks), shard_chunks)]
        futures = client.scatter(shards, hash=False)
        return cls(client, futures, n_tokens=corpus.n_tokens, n_documents=corpus.n_documents,
                   n_chunks=len(chunks), n_characters=corpus.n_characters)

    @classmethod
    def from_files(cls, client: Client, tokenizer: Tokenizer, files: Corpus, *,
                   files_per_shard: int = 1, chunk_tokens: int = CHUNK_TOKENS) -> ShardedCorpus:
        """Encode the files of ``files`` on the workers, ``files_per_shard`` files per shard.

        Every worker reads its own files (they must be readable by the workers at the same
        absolute paths) with the corpus's separator and error policy, and encodes them with
        ``tokenizer``. Blocks until all shards are encoded; shards without documents are dropped.

        Args:
            files: a :class:`saffu.corpus.Corpus` (e.g. ``read_documents("dir/")``).
            files_per_shard: consecutive files per shard (and per encoding task).
            chunk_tokens: chunk size within a shard, as in :func:`saffu.corpus.encode_corpus`.
        """
        if not isinstance(files, Corpus):
            raise InvalidParameterError(f"files must be a saffu.corpus.Corpus, got {type(files).__name__}")
        _check_count("files_per_shard", files_per_shard)
        _check_count("chunk_tokens", chunk_tokens)
        paths = [path.resolve() for path in files.paths]
        token = uuid.uuid4().hex
        tokenizer_future = _submit_value(client, tokenizer, f"saffu-tokenizer-{token}")
        shards = [
            client.submit(_encode_files, tokenizer_future,
                          Corpus(paths[start:start + files_per_shard], separator=files.separator,
                                 errors=files.errors),
                          chunk_tokens, key=(f"saffu-encode-{token}", i))
            for i, start in enumerate(range(0, len(paths), files_per_shard))]
        counted = [client.submit(_shard_sizes, shard, key=(f"saffu-sizes-{token}", i))
                   for i, shard in enumerate(shards)]
        with cancelled_on_failure(client, [tokenizer_future, *shards, *counted]):
            sizes = client.gather(counted)
        kept = [(shard, size) for shard, size in zip(shards, sizes, strict=True) if size[0] > 0]
        totals = np.sum([size for _, size in kept], axis=0, dtype=np.int64) if kept else [0] * 4
        return cls(client, [shard for shard, _ in kept], n_tokens=totals[0],
                   n_documents=totals[1], n_chunks=totals[2], n_characters=totals[3])

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The ``(ids, pos)`` chunks in order, fetched from the workers one shard at a time."""
        for shard in self.shards:
            yield from shard.result().chunks()

    __iter__ = chunks

    def __len__(self) -> int:
        return self._n_chunks

    def token_counts(self, vocab_size: int) -> np.ndarray:
        """Occurrences of each token id, counted on the workers: ``int64`` (vocab_size,)."""
        token = uuid.uuid4().hex
        counts = [self.client.submit(TokenizedCorpus.token_counts, shard, vocab_size,
                                     key=(f"saffu-count-{token}", i))
                  for i, shard in enumerate(self.shards)]
        total = tree_sum(self.client, counts, name="saffu-count-sum")
        with cancelled_on_failure(self.client, [*counts, total]):
            return total.result()

    def __repr__(self) -> str:
        return (f"ShardedCorpus({self.n_documents} documents, {self.n_tokens} tokens, "
                f"{self._n_chunks} chunks in {len(self.shards)} shards)")


def distribute(corpus: TokenizedCorpus, client: Client, *, shard_chunks: int = 1) -> ShardedCorpus:
    """``corpus`` on the cluster: a :class:`ShardedCorpus` of ``client`` passes through, any
    other :class:`TokenizedCorpus` is scattered (:meth:`ShardedCorpus.scatter`)."""
    if isinstance(corpus, ShardedCorpus):
        if corpus.client is not client:
            raise InvalidParameterError("the corpus's shards belong to another Dask client")
        return corpus
    if not isinstance(corpus, TokenizedCorpus):
        raise InvalidParameterError(f"corpus must be a TokenizedCorpus, got {type(corpus).__name__}")
    return ShardedCorpus.scatter(corpus, client, shard_chunks=shard_chunks)


def run_pass_distributed(stage: Stage, model: SaffuModel, corpus: TokenizedCorpus, client: Client,
                         *, split_every: int = SPLIT_EVERY,
                         kernel_threads: int | None = 1) -> PassStatistics:
    """Accumulate one pass's statistics over the corpus's shards, as Dask tasks.

    Args:
        stage: the pass (one of ``saffu.fit.STAGES``).
        model: the model with the weights solved by the earlier passes.
        corpus: a :class:`ShardedCorpus` of ``client``, or a :class:`TokenizedCorpus` to
            scatter for this pass only (one chunk per shard).
        split_every: statistics added per reduction task (≥ 2).
        kernel_threads: kernel threads per task; ``None`` keeps each worker's own setting
            (``SAFFU_NUM_THREADS``, ``saffu.set_num_threads``, or all its cores). It is a
            per-process setting: on an in-process cluster (``processes=False``) the tasks set
            it in the client's process too.
    Returns:
        The pass's statistics over the whole corpus, on the client.
    """
    _check_count("split_every", split_every, minimum=2)
    if kernel_threads is not None:
        _check_count("kernel_threads", kernel_threads)
    sharded = distribute(corpus, client)
    if not sharded.shards:
        raise InvalidParameterError("cannot run a pass over an empty corpus")
    name = f"saffu-{stage.name}"
    token = uuid.uuid4().hex
    weights = _submit_value(client, _pass_weights(model), f"{name}-model-{token}")
    partials = [client.submit(_accumulate_shard, stage, weights, shard, kernel_threads,
                              key=(f"{name}-accumulate-{token}", i))
                for i, shard in enumerate(sharded.shards)]
    total = tree_sum(client, partials, split_every=split_every, name=f"{name}-sum")
    try:
        with cancelled_on_failure(client, [weights, *partials, total]):
            return total.result()
    except CancelledError as error:
        raise ComputationError(
            f"Dask cancelled the {stage.name} pass ({error}). If a worker died, the shards it held "
            "were lost: shards scattered from the client cannot be rebuilt; use "
            "ShardedCorpus.from_files or fit_files for shards that survive a worker's death"
        ) from error


@contextlib.contextmanager
def cancelled_on_failure(client: Client, futures: Iterable[Future]) -> Iterator[None]:
    """If the block raises anything, ``KeyboardInterrupt`` included, cancel ``futures`` (and the
    tasks that depend on them) on the cluster, then let the exception go on. Without this, the
    futures stay referenced by the traceback (an interactive session keeps it) and the cluster
    goes on computing them."""
    futures = list(futures)
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # a closed client or a lost scheduler: nothing runs
            client.cancel(futures, force=True)
        raise


def tree_sum(client: Client, futures: Sequence[Future], *, split_every: int = SPLIT_EVERY,
             name: str = "saffu-sum") -> Future:
    """A future of the sum of ``futures`` (anything with ``+``), added by a tree of tasks.

    Level by level, each group of ``split_every`` neighbours becomes one task that adds them
    left to right (a last, single future moves up unchanged). The additions, and so the
    floating-point result, depend only on ``len(futures)`` and ``split_every``.
    """
    _check_count("split_every", split_every, minimum=2)
    if not futures:
        raise InvalidParameterError("there is nothing to sum")
    prefix = f"{name}-{uuid.uuid4().hex}"  # keys of one call: Dask would reuse an existing key
    level = list(futures)
    depth = 0
    while len(level) > 1:
        groups = [level[start:start + split_every] for start in range(0, len(level), split_every)]
        level = [group[0] if len(group) == 1
                 else client.submit(_sum, *group, key=(prefix, depth, i))
                 for i, group in enumerate(groups)]
        depth += 1
    return level[0]


def fit_files(model: SaffuModel, source: PathLike | Sequence[PathLike], client: Client, *,
              pattern: str = "*.txt", separator: str | re.Pattern[str] | None = None,
              errors: Errors = "strict",
              files_per_shard: int = 1, chunk_tokens: int = CHUNK_TOKENS,
              verbose: int = 1) -> SaffuModel:
    """Fit ``model`` on text files that the workers read and encode themselves.

    ``source``, ``pattern``, ``separator`` and ``errors`` name the files and their documents as
    in :func:`saffu.corpus.read_documents`. Without a tokenizer, the model's tokenizer is
    first trained here on the client, reading the files once; the encoding, the token counts
    for the cipher and all passes then run on the workers (see
    :meth:`ShardedCorpus.from_files`). The result equals ``model.fit(read_documents(...))`` up to
    floating-point rounding. Returns ``model``, fitted.
    """
    files = Corpus(source, pattern=pattern, separator=separator, errors=errors)
    if model.tokenizer is None:
        config = model.config
        model.tokenizer = make_tokenizer(config.tokenizer, vocab_size=config.vocab_size).fit(files)
    corpus = ShardedCorpus.from_files(client, model.tokenizer, files,
                                      files_per_shard=files_per_shard, chunk_tokens=chunk_tokens)
    return model.fit(corpus, verbose=verbose, runner=DaskRunner(client))


class DaskRunner:
    """A :class:`saffu.fit.PassRunner` that runs each pass of a fit as Dask tasks over shards:
    ``model.fit(documents, runner=DaskRunner(client))``. The corpus is scattered to the
    workers once (a :class:`ShardedCorpus` of ``client`` is used as it is); see
    :func:`run_pass_distributed` for the options."""

    def __init__(self, client: Client, *, split_every: int = SPLIT_EVERY,
                 kernel_threads: int | None = 1) -> None:
        if not isinstance(client, Client):
            raise InvalidParameterError(
                f"client must be a dask.distributed.Client, got {type(client).__name__}")
        self.client = client
        self.split_every = split_every
        self.kernel_threads = kernel_threads

    def prepare(self, corpus: TokenizedCorpus) -> ShardedCorpus:
        return distribute(corpus, self.client)

    def run_pass(self, stage: Stage, model: SaffuModel, corpus: TokenizedCorpus,
                 verbose: int) -> PassStatistics:
        return run_pass_distributed(stage, model, corpus, self.client, split_every=self.split_every,
                                    kernel_threads=self.kernel_threads)


# --- tasks and helpers ---------------------------------------------------------------------------


def _pass_weights(model: SaffuModel) -> SaffuModel:
    """A shallow copy of ``model`` with what a pass needs: weights, cipher, codes and experts
    (not the tokenizer nor the statistics of earlier passes, which can be large)."""
    return dataclasses.replace(model, tokenizer=None, fit_state=FitState(experts=model.fit_state.experts))


def _submit_value(client: Client, value: Any, key: str) -> Future:
    """``value`` on the cluster as a task's result: unlike scattered data, Dask rebuilds it if
    the workers holding it die. It travels once in the graph, then from worker to worker."""
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1GiB"}):
        return client.submit(_identity, value, key=key)


def _identity(value: Any) -> Any:
    return value


def _accumulate_shard(stage: Stage, model: SaffuModel, shard: TokenizedCorpus,
                      kernel_threads: int | None) -> PassStatistics:
    with threads(kernel_threads):
        return accumulate_chunks(stage, model, shard.chunks())


def _sum(*parts: Any) -> Any:
    return functools.reduce(operator.add, parts)


def _encode_files(tokenizer: Tokenizer, files: Corpus, chunk_tokens: int) -> TokenizedCorpus:
    documents = iter(files)
    first = next(documents, None)
    if first is None:  # every file of the shard is blank
        return TokenizedCorpus([])
    return TokenizedCorpus.from_documents(tokenizer, chain([first], documents),
                                          chunk_tokens=chunk_tokens)


def _shard_sizes(shard: TokenizedCorpus) -> tuple[int, int, int, int]:
    """(tokens, documents, chunks, characters) of one shard."""
    return shard.n_tokens, shard.n_documents, len(shard), shard.n_characters


@sizeof.register(TokenizedCorpus)
def _corpus_bytes(corpus: TokenizedCorpus) -> int:
    # Dask places each task where its largest input is, so it must see the shards' true size.
    return 8 * corpus.n_tokens  # int32 ids and positions


@sizeof.register(PassStatistics)
def _statistics_bytes(stats: PassStatistics) -> int:
    return sum(array.nbytes for array in stats.to_arrays().values())


def _check_count(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidParameterError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
