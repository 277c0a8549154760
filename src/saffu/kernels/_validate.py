"""Input checks shared by the validated kernel wrappers: nothing malformed reaches C++."""

from __future__ import annotations

import numpy as np

from saffu.errors import InvalidParameterError


def check_array(name: str, a: object, dtypes: np.dtype | tuple[np.dtype, ...], ndim: int,
                shape: tuple[int, ...] | None = None, *, writeable: bool = False) -> np.ndarray:
    """Return ``a`` if it is a C-contiguous ndarray of one of ``dtypes``, ``ndim`` dimensions,
    ``shape`` (when given) and writeable (when asked); raise TypeError/ValueError naming it."""
    dtypes = dtypes if isinstance(dtypes, tuple) else (dtypes,)
    if not isinstance(a, np.ndarray):
        raise InvalidParameterError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in dtypes:
        expected = " or ".join(str(d) for d in dtypes)
        raise InvalidParameterError(f"{name} must have dtype {expected} (native byte order), got {a.dtype}")
    if a.ndim != ndim:
        raise InvalidParameterError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if shape is not None and a.shape != tuple(shape):
        raise InvalidParameterError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise InvalidParameterError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    if writeable and not a.flags.writeable:
        raise InvalidParameterError(f"{name} must be writeable")
    return a
