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
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters
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
    "Roadmap"), while a worker's resident memory stays at its peak."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


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
