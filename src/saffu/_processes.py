"""saffu's worker processes: clean interruption, and an allocator that keeps freed memory.

Ctrl-C (once or twice), SIGTERM and the death of the parent end a command promptly and leave no
orphaned process behind:

- The parent turns SIGTERM into ``KeyboardInterrupt`` (:func:`sigterm_as_interrupt`), so one
  cleanup path serves both signals.
- Workers ignore SIGINT (the terminal sends it to the whole process group): the parent alone
  decides, and stops them with :func:`stop_pool`; on Linux a worker also dies with its parent
  (``PR_SET_PDEATHSIG``), so even ``kill -9`` of the parent leaves no orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # glibc mallopt parameters
# Where glibc's dynamic thresholds settle once a process has freed a large mapped array (the
# mmap threshold rises to the freed size, at most 4 MiB · sizeof(long); trimming at twice it),
# and its default count of mapped chunks.
_GLIBC_SETTLED_MMAP_THRESHOLD = 32 << 20
_GLIBC_SETTLED_TRIM_THRESHOLD = 64 << 20
_GLIBC_MMAP_MAX = 65536
STOP_TIMEOUT = 5.0  # seconds a worker gets to exit after SIGTERM before SIGKILL


def init_worker_signals() -> None:
    """In a worker process: leave Ctrl-C to the parent, die when the parent dies, and hold no
    named semaphore that being killed would leak (see :func:`_thread_lock_for_progress_bars`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    _thread_lock_for_progress_bars()


def keep_freed_memory() -> None:
    """In a worker process that fits many models (glibc only; elsewhere nothing): serve every
    allocation from the heap and keep freed memory there, instead of mapping each large array
    anew and returning it to the system when freed. A fit allocates and frees arrays of tens
    to hundreds of MB, and each fresh mapping costs the kernel a page fault and zeroing per
    page: in the shipped roadmap's workers the system time fell from 107 to 3 s (bench/RESULTS.md,
    "Roadmap"), while a worker's resident memory stays at its peak. NumPy's transparent huge
    pages are turned off too, as in :func:`reusing_freed_memory`."""
    global _keeping_for_good
    libc = _glibc()
    if libc is not None:
        _hold_freed_memory(libc)
        _keeping_for_good = True


_keeping_for_good = False
_reusing = 0  # fits inside reusing_freed_memory() now
_reusing_lock = threading.Lock()
_huge_pages_before: bool | None = None  # NumPy's setting before the outermost fit


@contextlib.contextmanager
def reusing_freed_memory() -> Iterator[None]:
    """For the length of a fit (glibc only; elsewhere nothing): large arrays come from the heap
    and freed ones are reused, with NumPy's transparent huge pages off (a huge page is zeroed
    whole on its first touch), instead of each array being mapped and zeroed anew; at the end
    the free memory goes back to the system (``malloc_trim``) and the allocator is left as
    glibc's own dynamic thresholds leave a process that has freed a large array. Nested and
    concurrent fits share one setting; inside :func:`keep_freed_memory`, or where the user has
    tuned the allocator (a ``MALLOC_*_`` or ``GLIBC_TUNABLES`` environment variable), it does
    nothing.

    The arrays a fitted model keeps lie in the heap: when the model is deleted, their memory
    is reused by the process and goes back to the system at the end of the next fit."""
    libc = None if _allocator_tuned_by_user() else _glibc()
    if libc is None:
        yield
        return
    _enter_reuse(libc)
    try:
        yield
    finally:
        _leave_reuse(libc)


def _hold_freed_memory(libc: ctypes.CDLL) -> bool | None:
    """Every allocation from the heap, freed memory kept there, NumPy's huge pages off; returns
    NumPy's setting before (see :func:`_set_numpy_huge_pages`)."""
    huge_pages = _set_numpy_huge_pages(False)  # first: the one step that may raise
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    return huge_pages


def _enter_reuse(libc: ctypes.CDLL) -> None:
    global _reusing, _huge_pages_before
    with _reusing_lock:
        if _reusing == 0 and not _keeping_for_good:
            _huge_pages_before = _hold_freed_memory(libc)
        _reusing += 1


def _leave_reuse(libc: ctypes.CDLL) -> None:
    global _reusing
    with _reusing_lock:
        _reusing -= 1
        if _reusing == 0 and not _keeping_for_good:
            libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
            libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_SETTLED_MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_SETTLED_TRIM_THRESHOLD)
            libc.malloc_trim(0)  # the heap's free memory back to the system
            if _huge_pages_before is not None:
                _set_numpy_huge_pages(_huge_pages_before)


def _allocator_tuned_by_user() -> bool:
    return any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ) \
        or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def _set_numpy_huge_pages(enabled: bool) -> bool | None:
    """Turn NumPy's ``madvise(MADV_HUGEPAGE)`` of large arrays on or off; returns the setting
    before, or None where this NumPy has no such switch (nothing changes)."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage as switch
    except ImportError:
        try:
            from numpy.core.multiarray import _set_madvise_hugepage as switch
        except ImportError:
            return None
    return bool(switch(enabled))


def _thread_lock_for_progress_bars() -> None:
    """tqdm's first bar makes a multiprocessing lock, a named semaphore; a worker stopped by a
    signal never releases it, and Python's resource tracker then prints "leaked semaphore
    objects" warnings on the parent's stderr when it exits. A worker's bars need a thread lock."""
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


def interrupt_once(signum: int, frame: object) -> None:
    """A handler for SIGINT and SIGTERM: the first raises KeyboardInterrupt; later ones are
    ignored, because the process is stopping already (a second Ctrl-C must not cut its cleanup)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def install_interrupt_handlers() -> None:
    """For a command-line process: SIGINT and SIGTERM both stop it cleanly, once."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, interrupt_once)
        signal.signal(signal.SIGTERM, interrupt_once)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block (main thread only), SIGTERM raises KeyboardInterrupt like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt_once)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_pool(executor: ProcessPoolExecutor) -> None:
    """Terminate every worker of ``executor`` now (SIGTERM, then SIGKILL after a grace period)
    and shut it down without waiting for its tasks; further Ctrl-Cs are ignored meanwhile, so
    the cleanup always completes (it takes at most ``STOP_TIMEOUT`` seconds)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        processes = list((getattr(executor, "_processes", None) or {}).values())
        for process in processes:
            with contextlib.suppress(Exception):
                process.terminate()
        for process in processes:
            process.join(STOP_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join(STOP_TIMEOUT)
        executor.shutdown(wait=False, cancel_futures=True)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
