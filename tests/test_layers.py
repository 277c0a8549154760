"""Context-model kinds and aggregations are defined once (saffu.kinds) and every backend agrees."""

from __future__ import annotations

import pytest

import saffu
from saffu.errors import InvalidParameterError
from saffu.kinds import Aggregation, ContextKind
from saffu.layers import ContextSpec
from test_kernels_saffu import CONTEXT_MODELS


def test_every_kind_is_exercised_by_the_kernel_tests():
    """A new ContextKind fails here until tests/test_kernels_saffu.py runs it on every backend."""
    assert {kind for kind, _ in CONTEXT_MODELS} == {kind.code for kind in ContextKind}


@pytest.mark.skipif("cpp" not in saffu.available_backends(), reason="C++ extension not built")
def test_cpp_codes_equal_the_python_definitions():
    from saffu import _core

    assert _core.CONTEXT_KIND_CODES == {kind.value: kind.code for kind in ContextKind}
    assert _core.AGGREGATION_CODES == {a.value: a.code for a in Aggregation}


def test_kinds_compare_equal_to_their_names_and_reject_unknown_ones():
    assert ContextKind.RADIAL == "radial" and ContextSpec("block", 4).kind is ContextKind.BLOCK
    assert [spec.attends for spec in (ContextSpec("radial", 2), ContextSpec("document", 1))] == \
        [True, False]
    with pytest.raises(InvalidParameterError, match="context kind"):
        ContextSpec("tree", 2)
    with pytest.raises(InvalidParameterError, match="size 1"):
        ContextSpec("document", 3)
    with pytest.raises(InvalidParameterError, match="aggregation"):
        Aggregation.parse("max")


def test_input_width_follows_the_aggregation():
    spec = ContextSpec("radial", 3)
    assert spec.input_dim(16, "cat") == 48 and spec.input_dim(16, "sum") == 16
    assert ContextSpec("document", 1).input_dim(16, "cat") == 16
