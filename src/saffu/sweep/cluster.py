"""A sweep's variants as tasks on a Dask cluster (``run_sweep(..., client=client)``).

The sweep's data (the tokenizer and the encoded splits, :class:`~saffu.sweep.data.SweepData`)
goes to the cluster once, as the result of a task (like the model of a distributed pass,
:mod:`saffu.distributed`): workers fetch it from one another, and Dask rebuilds it if every
worker holding it dies, which a scattered value would not survive. Each task fits and scores
one group of :func:`~saffu.sweep.variants.output_tau_groups` (a variant, or variants that
differ in ``output_tau`` only) with one kernel thread and returns the records; the client
stores them in the sweep folder, so a sweep's cache is the same whether it ran here or on a
cluster, and either can resume the other. Fits are deterministic, so a task that Dask runs
again after its worker died returns the same records. Leaving the block
(:class:`ClusterFits`), whether done, failed or interrupted, cancels the tasks still queued.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from threadpoolctl import threadpool_limits

from saffu._backend import threads
from saffu.errors import InvalidParameterError, MissingDependencyError
from saffu.model import SaffuConfig
from saffu.sweep.data import SweepData
from saffu.sweep.grid import Backprop
from saffu.sweep.variants import Result, fit_variants
from saffu.validation import is_int

try:
    from dask.distributed import Client, Future, as_completed
except ImportError as error:  # pragma: no cover - dask is an optional dependency
    raise MissingDependencyError.extra("saffu.sweep.cluster", "dask", error) from error

from saffu.distributed import _submit_value

KEY_PREFIX = "saffu-sweep"
"""Dask keys of a sweep's tasks start with this: ``saffu-sweep-<run>-data`` and ``-fit``."""


def check_client(client: object) -> None:
    """Raise InvalidParameterError unless ``client`` is a ``dask.distributed.Client``."""
    if not isinstance(client, Client):
        raise InvalidParameterError(
            f"client must be a dask.distributed.Client, got {type(client).__name__}")


class ClusterFits:
    """A sweep's data on a Dask cluster, and groups of its variants fitted there as tasks.

    Use it as a context manager: the data is sent with the first tasks (not at all if there
    are none); leaving the block cancels every task still queued or running and releases the
    data on the workers.

    Args:
        client: a ``dask.distributed.Client``.
        data: the sweep's tokenizer and encoded splits.
        kernel_threads: kernel and BLAS threads per task (a worker runs as many tasks at once
            as it has threads: ``dask worker --nthreads``).
    """

    def __init__(self, client: Client, data: SweepData, *, kernel_threads: int = 1) -> None:
        check_client(client)
        if not is_int(kernel_threads) or kernel_threads < 1:
            raise InvalidParameterError(f"kernel_threads must be a positive integer, got {kernel_threads!r}")
        self.client, self.data, self.kernel_threads = client, data, kernel_threads
        self.prefix = f"{KEY_PREFIX}-{uuid.uuid4().hex}"
        self._data: Future | None = None
        self._futures: list[Future] = []
        self._open = False

    def __enter__(self) -> ClusterFits:
        self._open = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        futures = [*self._futures, *([self._data] if self._data is not None else [])]
        if futures:
            self.client.cancel(futures, force=True)
        self._futures, self._data, self._open = [], None, False

    def fit(self, groups: Sequence[list[SaffuConfig]], backprop: Backprop | None,
            splits: tuple[str, ...]) -> Iterator[tuple[list[SaffuConfig], Result]]:
        """Submit one task per group (the first groups get the highest priority) and yield
        ``(group, result)`` as the tasks finish: ``result()`` returns the group's records
        (see :func:`~saffu.sweep.variants.fit_variant`) or raises the task's error."""
        if not self._open:
            raise InvalidParameterError("ClusterFits.fit is called inside a `with ClusterFits(...)` block")
        if not groups:
            return
        if self._data is None:
            self._data = _submit_value(self.client, self.data, f"{self.prefix}-data")
        batch = len(self._futures)
        futures = {self.client.submit(_fit_group, self._data, group, backprop, splits,
                                      self.kernel_threads, key=(f"{self.prefix}-fit", batch + i),
                                      priority=len(groups) - i): group
                   for i, group in enumerate(groups)}
        self._futures.extend(futures)
        for future in as_completed(futures):
            yield futures[future], future.result


def _fit_group(data: SweepData, configs: list[SaffuConfig], backprop: Backprop | None,
               splits: tuple[str, ...], kernel_threads: int) -> list[dict[str, Any]]:
    """The task: :func:`fit_variants` of one group on a worker, with ``kernel_threads`` threads."""
    with _task_threads(kernel_threads):
        return list(fit_variants(configs, data, backprop=backprop, n_jobs=kernel_threads,
                                 splits=splits))


_threads_lock = threading.Lock()
_threads_users = 0
_threads_restore = contextlib.ExitStack()


@contextlib.contextmanager
def _task_threads(n: int) -> Iterator[None]:
    """``n`` kernel and BLAS threads while sweep tasks run in this process. The settings are
    per process and a worker runs several tasks at once, so the first task to start sets them
    and the last to end restores them (a task restoring them alone would change its
    neighbours' settings mid-fit)."""
    global _threads_users
    with _threads_lock:
        if _threads_users == 0:
            _threads_restore.enter_context(threads(n))
            _threads_restore.enter_context(threadpool_limits(n))
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                _threads_restore.close()
