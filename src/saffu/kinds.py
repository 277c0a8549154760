"""Context-model kinds and aggregations, with the integer codes every kernel backend takes.

Defined once here, at the bottom of the package (no saffu imports but the errors), so the
kernel backends, the layers, the config and the PyTorch module all read the same definitions.
The C++ extension mirrors the codes (``csrc/saffu/saffu_pass.hpp``, an enum) and exposes them as
``saffu._core.CONTEXT_KIND_CODES`` / ``AGGREGATION_CODES``; ``tests/test_layers.py`` checks that
they agree.
"""

from __future__ import annotations

import enum

from saffu.errors import InvalidParameterError

__all__ = ["Aggregation", "ContextKind", "flat_layer_slices"]


class _Coded(str, enum.Enum):
    """A named choice with the integer code the kernels take (``_CODES`` below)."""

    @property
    def code(self) -> int:
        """The integer the kernels take for this member."""
        return _CODES[self]

    @classmethod
    def parse(cls, value: object) -> _Coded:
        """The member named ``value``, or InvalidParameterError listing the names."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(member.value for member in cls)
            raise InvalidParameterError(f"{_WHAT[cls]} must be one of {names}, got {value!r}") from None


class ContextKind(_Coded):
    """What a context model looks at; compares equal to its name (``ContextKind.RADIAL == "radial"``).

    - ``RADIAL``: the last r tokens (relative positions); size r.
    - ``BLOCK``: the tokens since the start of the current fixed block of B positions; size B.
    - ``DOCUMENT``: the normalized running mean of the document's cipher vectors; size 1, no attention.
    """

    RADIAL = "radial"
    BLOCK = "block"
    DOCUMENT = "document"

    @property
    def attends(self) -> bool:
        """Whether context models of this kind have an attention layer."""
        return self is not ContextKind.DOCUMENT


class Aggregation(_Coded):
    """How attended vectors are joined: ``SUM`` (z has ``bits`` values) or ``CAT`` (``K·bits``)."""

    SUM = "sum"
    CAT = "cat"


_CODES = {ContextKind.RADIAL: 0, ContextKind.BLOCK: 1, ContextKind.DOCUMENT: 2,
          Aggregation.SUM: 0, Aggregation.CAT: 1}
_WHAT = {ContextKind: "context kind", Aggregation: "aggregation"}


def flat_layer_slices(sizes: list[int], aggregation: int, bits: int,
                      D: int) -> list[tuple[slice, slice, int]]:
    """Where each context model's weights lie in the flat ``W`` and ``UT`` of the generation
    kernel (``saffu.kernels.saffu_generate``: the layers' (K, K) and (D, Z) arrays, flattened and
    concatenated in order): for each window length K in ``sizes``, its slice of W, its slice of
    UT, and Z (K·bits with ``cat`` aggregation, else bits; the document model has K = 1)."""
    slices, w, u = [], 0, 0
    for K in sizes:
        Z = K * bits if aggregation == _CODES[Aggregation.CAT] else bits
        slices.append((slice(w, w + K * K), slice(u, u + D * Z), Z))
        w, u = w + K * K, u + D * Z
    return slices
