"""Every backend implements every kernel of saffu._kernel_spec.KERNELS with the same parameters;
the validated wrappers (saffu.kernels) and the C++ stubs (_core.pyi) follow the same table."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import saffu
from saffu import kernels
from saffu._backend import backend_module
from saffu._kernel_spec import ALLOCATED_BY_WRAPPER, KERNELS

STUBS = Path(saffu.__file__).with_name("_core.pyi")


def _cpp_parameters(function) -> set[tuple[str, ...]]:
    """Parameter names of each signature line in a pybind11 docstring (overloads included)."""
    found = set()
    for line in (function.__doc__ or "").splitlines():
        match = re.match(rf"^(?:\d+\. )?{function.__name__}\((.*)\) ->", line.strip())
        if match:
            found.add(tuple(p.split(":")[0].strip() for p in match.group(1).split(", ")))
    return found


@pytest.mark.parametrize("backend", saffu.available_backends())
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_backend_has_every_kernel_with_the_same_parameters(backend, name):
    function = getattr(backend_module(backend), name)
    if backend == "cpp":
        assert _cpp_parameters(function) == {KERNELS[name]}
    else:
        assert tuple(inspect.signature(function).parameters) == KERNELS[name]


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_the_wrappers_take_the_kernel_parameters_but_the_thread_count(name):
    """The wrapper sets n_threads; it may also allocate output arrays (ALLOCATED_BY_WRAPPER)."""
    assert KERNELS[name][-1] == "n_threads"
    wrapper = tuple(inspect.signature(getattr(kernels, name)).parameters)
    allocated = ALLOCATED_BY_WRAPPER.get(name, ())
    assert wrapper == tuple(p for p in KERNELS[name][:-1] if p not in allocated)


def test_the_stubs_list_every_kernel_with_its_parameters():
    tree = ast.parse(STUBS.read_text())
    stubs = {node.name: tuple(a.arg for a in node.args.args)
             for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert stubs == KERNELS


def test_a_backend_without_a_kernel_is_refused(monkeypatch):
    import types

    from saffu import _backend

    broken = types.ModuleType("broken")
    with pytest.raises(ImportError, match="no kernel"):
        _backend._kernel_table("broken", broken)
