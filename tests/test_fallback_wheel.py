"""Without a working C++ compiler, ``pip install .`` still gives a working saffu: CMake's failure
makes scikit-build-core build again as a pure-Python wheel (pyproject's override), and saffu then
says once that the compiled kernels are missing and runs the Numba kernels."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from saffu import _backend

ROOT = Path(__file__).resolve().parents[1]
MISSING = "the compiled kernels (saffu._core) are not installed"


def _pip(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", *args, "--no-cache-dir", "--disable-pip-version-check"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _clean_env() -> dict[str, str]:
    """This process's environment without what would steer the build or the import."""
    return {key: value for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "CMAKE_ARGS", "SAFFU_BACKEND", "SAFFU_REQUIRE_CORE")}


def _build_without_compiler(out: Path, **env: str) -> subprocess.CompletedProcess:
    """``pip wheel`` of the source tree into ``out`` with /bin/false as the C++ compiler (CMake's
    compiler check then fails at configure, as with none at all)."""
    return _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT),
                env={**_clean_env(), "CXX": "/bin/false", **env})


def builds_the_wheel(test):
    """Mark a test that builds saffu from its source tree with the installed build backend."""
    test = pytest.mark.slow(test)
    test = pytest.mark.skipif(sys.platform == "win32", reason="uses /bin/false as the compiler")(test)
    return pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file() or not _has("scikit_build_core"),
                              reason="needs the source tree and scikit-build-core")(test)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture
def reset_backend(monkeypatch):
    """A fresh backend choice for this test; the process's own is restored afterwards."""
    monkeypatch.setattr(_backend, "_active", None)
    monkeypatch.setattr(_backend, "_tables", {})
    monkeypatch.setattr(_backend, "_warned_broken", set())
    monkeypatch.delenv("SAFFU_BACKEND", raising=False)


def test_a_missing_core_warns_once_naming_the_fix(reset_backend, monkeypatch):
    monkeypatch.setitem(_backend._MODULES, "cpp", "saffu._no_such_core")
    with pytest.warns(RuntimeWarning, match=r"not installed.*--force-reinstall") as record:
        chosen = _backend.get_backend()
        assert _backend.get_backend() == chosen != "cpp"
    (warning,) = [w for w in record if MISSING in str(w.message)]
    assert "\n" not in str(warning.message)


def test_a_chosen_backend_does_not_warn_about_the_core(reset_backend, monkeypatch, recwarn):
    monkeypatch.setitem(_backend._MODULES, "cpp", "saffu._no_such_core")
    monkeypatch.setenv("SAFFU_BACKEND", "numpy")
    assert _backend.get_backend() == "numpy"
    assert not [w for w in recwarn if MISSING in str(w.message)]


@builds_the_wheel
def test_a_failed_compile_gives_a_pure_python_wheel_that_runs_on_numba(tmp_path):
    built = _build_without_compiler(tmp_path / "wheels")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("saffu-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "saffu/_numba/__init__.py" in names
    assert not [name for name in names if name.startswith("saffu/_core") and not name.endswith(".pyi")]

    env = _clean_env()
    installed = _pip("install", "--no-deps", "--no-index", "--target", str(tmp_path / "site"), str(wheel),
                     env=env)
    assert installed.returncode == 0, installed.stderr
    probe = ("import saffu; print(saffu.__file__); print(saffu.get_backend()); "
             "print(','.join(saffu.available_backends()))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            env={**env, "PYTHONPATH": str(tmp_path / "site")}, timeout=120)
    assert result.returncode == 0, result.stderr
    location, backend, available = result.stdout.split()
    assert Path(location).is_relative_to(tmp_path / "site")
    assert "cpp" not in available.split(",") and backend == available.split(",")[0]
    warning_lines = [line for line in result.stderr.splitlines() if MISSING in line]
    assert len(warning_lines) == 1 and f"the slower {backend} backend runs" in warning_lines[0]


@builds_the_wheel
def test_require_core_makes_a_failed_compile_fail(tmp_path):
    built = _build_without_compiler(tmp_path / "wheels", SAFFU_REQUIRE_CORE="1")
    assert built.returncode != 0 and "is not able to compile" in built.stdout + built.stderr
    assert not list(tmp_path.glob("wheels/*.whl"))
