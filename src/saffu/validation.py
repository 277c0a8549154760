"""Checks of scalar parameters, shared by every module that validates user input.

Each ``check_*`` returns the value in canonical form (an ``int``, a ``float``) or raises
:class:`~saffu.errors.InvalidParameterError` with a message that names the parameter and shows
the value. ``bool`` is never accepted as a number.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Collection
from typing import Any

import numpy as np

from saffu.errors import InvalidParameterError

__all__ = ["check_bool", "check_choice", "check_int", "check_real", "field_type", "is_int", "is_real"]


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (Python or NumPy), not a bool."""

    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: object) -> bool:
    """Whether ``value`` is a real number (int or float, Python or NumPy), not a bool."""

    return is_int(value) or isinstance(value, (float, np.floating))


def _bounds_text(low: float | None, high: float | None, low_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{'>' if low_open else '≥'} {low:g}"
    return f"≤ {high:g}" if high is not None else ""


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None, *,
              optional: bool = False) -> int | None:
    """``value`` as an ``int`` in ``[minimum, maximum]`` (``None`` allowed if ``optional``)."""
    if value is None and optional:
        return None
    if not is_int(value) or (minimum is not None and value < minimum) \
            or (maximum is not None and value > maximum):
        bounds = _bounds_text(minimum, maximum, False)
        none = "None or " if optional else ""
        raise InvalidParameterError(f"{name} must be {none}an int{' ' + bounds if bounds else ''}, "
                                    f"got {value!r}")
    return int(value)


def check_real(name: str, value: Any, minimum: float | None = None, maximum: float | None = None, *,
               exclusive_minimum: bool = False, optional: bool = False) -> float | None:
    """``value`` as a finite ``float`` within the bounds (``None`` allowed if ``optional``).

    ``exclusive_minimum`` makes the lower bound strict (``> minimum``).
    """
    if value is None and optional:
        return None
    ok = is_real(value) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if exclusive_minimum else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bounds = _bounds_text(minimum, maximum, exclusive_minimum)
        none = "None or " if optional else ""
        raise InvalidParameterError(f"{name} must be {none}a finite number"
                                    f"{' ' + bounds if bounds else ''}, got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (``True``/``False`` only, not 0/1)."""
    if not isinstance(value, bool):
        raise InvalidParameterError(f"{name} must be true or false, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    if isinstance(value, bool) or value not in choices:
        names = ", ".join(repr(c) for c in choices)
        raise InvalidParameterError(f"{name} must be one of {names}, got {value!r}")
    return value


def field_type(cls: type, name: str) -> type:
    """The type of dataclass field ``name`` of ``cls`` without ``None`` (int, float, bool, str)."""
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint
