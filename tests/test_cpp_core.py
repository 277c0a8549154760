"""The C++ core builds and passes its own test without Python (csrc/tests/core_test.cpp), and
keeps its index checks when saffu._core is called directly (no saffu.kernels validation).

Configures the project with ``-DSAFFU_BUILD_PYTHON=OFF -DSAFFU_BUILD_TESTS=ON`` in a temporary
directory, builds only the core library and the test executable, and runs it. Skipped where
CMake or a C++ compiler is missing, or where the sources are not at hand (an installed wheel).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import saffu
from saffu._backend import backend_module

ROOT = Path(__file__).resolve().parents[1]
COMPILERS = ("c++", "g++", "clang++", "cl")


def _compiler_available() -> bool:
    return bool(os.environ.get("CXX")) or any(shutil.which(name) for name in COMPILERS)


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_the_cpp_core_passes_its_own_test(tmp_path):
    if not (ROOT / "csrc" / "tests" / "core_test.cpp").is_file():
        pytest.skip("the C++ sources are not at hand")
    if shutil.which("cmake") is None or not _compiler_available():
        pytest.skip("needs cmake and a C++ compiler")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run(["cmake", "-S", str(ROOT), "-B", str(tmp_path), *generator, "-DCMAKE_BUILD_TYPE=Release",
          "-DSAFFU_BUILD_PYTHON=OFF", "-DSAFFU_BUILD_TESTS=ON"], timeout=120)
    _run(["cmake", "--build", str(tmp_path), "--target", "core_test", "--config", "Release"], timeout=300)
    executable = next(p for p in tmp_path.rglob("core_test*") if p.name in ("core_test", "core_test.exe"))
    result = _run([str(executable)], timeout=60)
    assert "all checks passed" in result.stdout


@pytest.fixture
def core():
    if "cpp" not in saffu.available_backends():
        pytest.skip("compiled backend not built")
    return backend_module("cpp")


def test_the_core_checks_indices_even_when_called_directly(core):
    """Unvalidated calls into saffu._core with CSR pointers, token ids or positions out of range
    raise ValueError (column indices are left to saffu.kernels: csrc/saffu/cooc.hpp)."""
    FT = np.zeros((2, 3))
    with pytest.raises(ValueError, match="non-decreasing"):
        core.cooc_sparse_onehot(FT, np.array([0, 2, 1, 2]), np.array([0, 1]), np.ones(2),
                                np.zeros(3, np.int64), 1)
    np.testing.assert_array_equal(FT, 0.0)
    ids, pos = np.array([0, 1, 5], np.int32), np.array([0, 1, 2], np.int32)
    E = np.eye(3, 2, dtype=np.float32)
    with pytest.raises(ValueError, match=r"ids\[2\] = 5 is out of range \[0, 3\)"):
        core.saffu_expert_stats(ids, pos, 0, 2, E, np.zeros((2, 3, 2)), np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match=r"pos\[2\] = 3 is inconsistent"):
        core.saffu_expert_stats(np.array([0, 1, 2], np.int32), np.array([0, 1, 3], np.int32), 0, 2, E,
                                np.zeros((2, 3, 2)), np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match=r"kind must be 0 \(radial\) or 1 \(block\)"):
        core.saffu_expert_stats(ids, pos, 9, 2, E, np.zeros((2, 3, 2)), np.zeros((2, 3)), 1)
