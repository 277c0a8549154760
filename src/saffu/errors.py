"""The exceptions saffu raises for conditions a user can cause.

Every error saffu raises on purpose derives from :class:`SaffuError`, so a caller (and the
``saffu`` command line) can tell a user's mistake from a bug: the CLI prints a ``SaffuError`` as
one line and lets anything else show its traceback. Each class also derives from the built-in
exception a Python user would expect (``ValueError``, ``TypeError``, ``ImportError``, ...), so
``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "ComputationError",
    "DiskFullError",
    "InvalidParameterError",
    "MissingDependencyError",
    "ModelFormatError",
    "NotFittedError",
    "SaffuError",
]


class SaffuError(Exception):
    """Base class of every error saffu raises for a condition the user can fix."""


class InvalidParameterError(SaffuError, ValueError, TypeError):
    """A value, type or combination of values passed to saffu is not valid."""


class NotFittedError(SaffuError, RuntimeError, ValueError):
    """A model, tokenizer or estimator was used before it was fitted or loaded."""


class ModelFormatError(SaffuError, ValueError):
    """A saved file or directory is missing, truncated, corrupted or of an incompatible version."""


class ComputationError(SaffuError, RuntimeError):
    """A computation could not complete for a reason outside the caller's arguments (e.g. a Dask
    worker died holding data that no task can rebuild)."""


class DiskFullError(SaffuError, OSError):
    """A write ran out of disk space (``ENOSPC``) or quota (``EDQUOT``). Nothing at ``filename``
    (the path the user named) was changed: saves write a temporary first, removed on failure.

    Constructed like an ``OSError``: ``DiskFullError(errno, strerror, filename)``.
    """

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class MissingDependencyError(SaffuError, ImportError):
    """An optional dependency (an extra such as ``saffu[torch]``) is not installed."""

    @classmethod
    def extra(cls, feature: str, extra: str, cause: BaseException | None = None) -> MissingDependencyError:
        """The error for ``feature`` without the optional dependencies of ``saffu[extra]``."""
        detail = f" ({cause})" if cause is not None else ""
        return cls(f"{feature} needs the '{extra}' extra: pip install 'saffu[{extra}]'{detail}")
