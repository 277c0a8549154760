"""Progress of the steps a user waits for: a bar on a terminal, one line per step elsewhere.

On a terminal (stderr is a TTY) a step with a known size shows a tqdm bar that stays when done;
in a log (CI, ``| tee``, a file) each step prints one line when it ends, with its duration, so a
long run is never silent. ``verbose=0`` prints nothing.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from tqdm.auto import tqdm

__all__ = ["bar", "step"]


def _terminal() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def step(description: str, verbose: int) -> Iterator[None]:
    """One step without a size (tokenizer training, encoding): a line when it ends."""
    started = time.perf_counter()
    yield
    if verbose:
        print(f"saffu: {description}: {time.perf_counter() - started:.1f} s", file=sys.stderr,
              flush=True)


@contextlib.contextmanager
def bar(description: str, total: int, verbose: int, unit: str = "tok") -> Iterator[tqdm]:
    """A bar of ``total`` units on a terminal; a line when it ends in a log."""
    started = time.perf_counter()
    with tqdm(total=total, desc=f"saffu {description}", unit=unit, unit_scale=True,
              disable=not verbose or not _terminal(), leave=True, file=sys.stderr) as progress:
        yield progress
    if verbose and not _terminal():
        print(f"saffu: {description}: {total:,} {unit} in {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)
