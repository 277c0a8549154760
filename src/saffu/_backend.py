"""Kernel backend selection: ``cpp`` (compiled ``saffu._core``), ``numba``, or ``numpy``.

The active backend is chosen, in order, by :func:`set_backend`, the ``SAFFU_BACKEND``
environment variable, or the first available of ``cpp`` and ``numba``. ``numpy`` is the plain
reference implementation: always available, slow, and used by the tests as the oracle.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import sys
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from types import ModuleType, SimpleNamespace

from saffu._kernel_spec import KERNELS
from saffu.errors import InvalidParameterError, MissingDependencyError

BACKENDS = ("cpp", "numba", "numpy")
_MODULES = {"cpp": "saffu._core", "numba": "saffu._numba", "numpy": "saffu._reference"}

_active: str | None = None
_num_threads: int | None = None
_tables: dict[str, SimpleNamespace] = {}
_warned_broken: set[str] = set()


def _import(name: str) -> SimpleNamespace | None:
    """The kernel table of backend ``name`` (one function per entry of ``KERNELS``), or None if
    the backend is not installed. One that is installed but fails to import (a broken build, a
    missing shared library) or lacks a kernel warns once, naming the cause."""
    if name in _tables:
        return _tables[name]
    module_name = _MODULES[name]
    try:
        module = importlib.import_module(module_name)
        _tables[name] = _kernel_table(name, module)
        return _tables[name]
    except ModuleNotFoundError as error:
        if error.name in (module_name, module_name.split(".")[-1], "numba"):
            return None
        _warn_broken(name, error)
    except ImportError as error:
        _warn_broken(name, error)
    return None


def _kernel_table(name: str, module: ModuleType) -> SimpleNamespace:
    """Every kernel of ``KERNELS`` from ``module`` or the modules it lists in ``KERNEL_MODULES``."""
    sources = (module, *getattr(module, "KERNEL_MODULES", ()))
    table = {}
    for kernel in KERNELS:
        found = [getattr(source, kernel) for source in sources if hasattr(source, kernel)]
        if not found:
            raise ImportError(f"it has no kernel {kernel!r}")
        table[kernel] = found[0]
    return SimpleNamespace(backend=name, **table)


def _warn_broken(name: str, error: ImportError) -> None:
    if name not in _warned_broken:
        _warned_broken.add(name)
        warnings.warn(f"saffu: the {name} backend ({_MODULES[name]}) is installed but does not "
                      f"import ({error}); using the next available backend", RuntimeWarning,
                      stacklevel=3)


def available_backends() -> list[str]:
    """Names of the backends that import on this machine, fastest first."""
    return [name for name in BACKENDS if _import(name) is not None]


def set_backend(name: str) -> None:
    """Select the kernel backend for this process (``"cpp"``, ``"numba"`` or ``"numpy"``)."""
    global _active
    if name not in BACKENDS:
        raise InvalidParameterError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if _import(name) is None:
        raise MissingDependencyError(
            f"backend {name!r} is not available here (available: {', '.join(available_backends())})"
        )
    _active = name


def get_backend() -> str:
    """Name of the active kernel backend."""
    global _active
    if _active is None:
        requested = os.environ.get("SAFFU_BACKEND", "").strip().lower()
        if requested:
            set_backend(requested)
        else:
            _active = next(name for name in BACKENDS if _import(name) is not None)  # numpy always
            if _active != "cpp" and "cpp" not in _warned_broken:
                _warn_missing_core(_active)
    return _active


def _warn_missing_core(used: str) -> None:
    """Say, when the backend is first chosen, that ``saffu._core`` is not installed (a wheel
    built without a C++ compiler), that backend ``used`` runs instead, and how to compile it."""
    warnings.warn(f"saffu: the compiled kernels (saffu._core) are not installed, so the slower {used} "
                  "backend runs; to compile them, install a C++17 compiler and CMake, then reinstall "
                  "with `pip install --no-cache-dir --force-reinstall saffu` (or `.` from a checkout); "
                  f"SAFFU_BACKEND={used} silences this", RuntimeWarning, stacklevel=3)


def backend_module(name: str | None = None) -> SimpleNamespace:
    """The kernels of backend ``name`` (default: the active one), one attribute per entry of
    ``saffu._kernel_spec.KERNELS``."""
    name = name or get_backend()
    module = _import(name)
    if module is None:
        raise MissingDependencyError(f"backend {name!r} is not available")
    if name == "numba":
        _announce_numba_compile()
    return module


_announced: list[bool] = []


def numba_cache_files() -> int:
    """How many compiled kernels Numba's cache holds for saffu (its ``*.nbi`` index files)."""
    folder = Path(__file__).parent / "_numba" / "__pycache__"
    return len(list(folder.glob("*.nbi"))) if folder.is_dir() else 0


def _announce_numba_compile() -> None:
    """Say once, on first use, that an empty Numba cache means compiling (10-40 s, once)."""
    if not _announced:
        _announced.append(True)
        if numba_cache_files() == 0:
            print("saffu: compiling the Numba kernels on first use (10-40 s; cached afterwards)",
                  file=sys.stderr, flush=True)


def set_num_threads(n: int | None) -> None:
    """Threads used by the kernels; ``None`` restores the default (``SAFFU_NUM_THREADS`` or all cores)."""
    global _num_threads
    if n is not None and (not isinstance(n, int) or n < 1):
        raise InvalidParameterError(f"number of threads must be a positive integer, got {n!r}")
    _num_threads = n


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Use ``n`` kernel threads inside the block (``None`` leaves the setting as it is)."""
    global _num_threads
    previous = _num_threads
    if n is not None:
        set_num_threads(n)
    try:
        yield
    finally:
        _num_threads = previous


def get_num_threads() -> int:
    """Threads the kernels use."""
    if _num_threads is not None:
        return _num_threads
    env = os.environ.get("SAFFU_NUM_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise InvalidParameterError(f"SAFFU_NUM_THREADS must be a positive integer, got {env!r}")
        return int(env)
    return os.cpu_count() or 1


def config_info() -> dict[str, object]:
    """Versions, backends and threads, as a dict (what :func:`show_config` prints)."""
    import numpy

    from saffu._version import __version__

    info: dict[str, object] = {
        "saffu": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "backend": get_backend(),
        "available_backends": available_backends(),
        "threads": get_num_threads(),
        "numba_cached_kernels": numba_cache_files(),
    }
    # Versions from the installed distributions' metadata: importing torch or dask to ask them
    # would take seconds (``saffu info`` must answer at once).
    for name, distribution in (("numba", "numba"), ("tokenizers", "tokenizers"),
                               ("safetensors", "safetensors"), ("sklearn", "scikit-learn"),
                               ("torch", "torch"), ("dask", "dask"), ("onnx", "onnx"),
                               ("onnxruntime", "onnxruntime")):
        try:
            info[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            info[name] = None
    return info


def show_config() -> None:
    """Print versions, the active backend, the available backends and the thread count."""
    for key, value in config_info().items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:>18}: {value if value is not None else 'not installed'}")
