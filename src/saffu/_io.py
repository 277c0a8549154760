"""Safe file and directory writes: a crash never leaves a half-written file in place, and saffu
never deletes or replaces what it did not write.

- :func:`atomic_write_bytes` / :func:`atomic_write_text`: a temporary file in the same folder,
  fsynced, then renamed over the target.
- :func:`check_output_directory`: before any work, refuse an output directory that saffu may
  not replace (a file, ``.``, the working directory or one of its parents, a non-empty folder
  that is not what saffu writes there).
- :func:`replace_directory`: build a directory in a temporary sibling and swap it in. On Linux
  the swap is one atomic ``renameat2(RENAME_EXCHANGE)``: at every moment the path holds either
  the old or the new directory in full. Elsewhere two renames are used, and a crash between
  them leaves the old directory in a hidden ``.NAME.<pid>.<random>.old`` sibling, which
  :func:`interrupted_replacement` finds so that loading can say where it is.

Temporaries carry the writer's process id; one whose process is gone is removed by the next
write to the same path. Permissions follow the umask, as for any file the user creates.

A full disk (``ENOSPC``) or quota (``EDQUOT``) during a write raises
:class:`~saffu.errors.DiskFullError` naming the path the caller asked for; the temporary is
removed and what was at the path is unchanged (:func:`reporting_full_disk`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from saffu.errors import DiskFullError, InvalidParameterError

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_FULL_DISK = {errno.ENOSPC: "no space left on the device: the disk is full"}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _FULL_DISK[errno.EDQUOT] = "disk quota exceeded: the quota is full"
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]+\.(?:tmp|old)")
"""``.NAME.<pid>.<random>.tmp`` (or ``.old``): the hidden siblings saffu's writes create."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _apply_umask(path: str | os.PathLike, directory: bool) -> None:
    """mkstemp/mkdtemp make private (0600/0700) entries; give them the modes a user expects."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


@contextlib.contextmanager
def reporting_full_disk(path: str | os.PathLike) -> Iterator[None]:
    """Inside the block, an ``OSError`` for a full disk or quota becomes a
    :class:`~saffu.errors.DiskFullError` naming ``path`` (an inner one is renamed too, so the
    message names the outermost path: the one the user gave)."""
    try:
        yield
    except OSError as error:
        if error.errno not in _FULL_DISK:
            raise
        raise DiskFullError(error.errno, f"{_FULL_DISK[error.errno]}; nothing there was changed "
                                         "(free some space and run again)",
                            os.fspath(path)) from error


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to the open file ``fd`` and fsync it: the one low-level
    write of this module (a write may be partial, e.g. just before the disk is full)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Raises:
        DiskFullError: the disk or quota is full; the temporary is removed, ``path`` unchanged.
    """
    path = Path(path)
    with reporting_full_disk(path):
        remove_stale_temporaries(path.parent, path.name)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp")
        try:
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            _apply_umask(tmp, directory=False)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def check_output_directory(path: str | os.PathLike, owned: Callable[[Path], bool], what: str) -> Path:
    """The directory to write for ``path`` (a symlink is followed), checked before any work.

    Args:
        path: where the user asked saffu to write.
        owned: whether an existing non-empty directory is one saffu wrote (and may replace).
        what: what saffu writes there, for the messages ("saffu model").
    Raises:
        InvalidParameterError: ``path`` is empty, ``.``/``..``, the working directory or one of
            its parents, an existing file, or a non-empty directory that is not a ``what``.
    """
    text = os.fspath(path)
    if not text.strip():
        raise InvalidParameterError(f"the output directory for the {what} is empty; give a path")
    target = Path(text).expanduser()
    if target.is_symlink():
        target = target.resolve()
    resolved = target.resolve()
    cwd = Path.cwd().resolve()
    if Path(text).name in ("", ".", "..") or resolved == cwd or resolved in cwd.parents:
        raise InvalidParameterError(
            f"{text} is the working directory or one of its parents; name a new directory for "
            f"the {what} (e.g. {text.rstrip('/') or '.'}/model)")
    if target.exists() and not target.is_dir():
        raise InvalidParameterError(f"{text} exists and is not a directory; saffu writes a "
                                    f"{what} as a directory")
    if target.is_dir() and any(target.iterdir()) and not owned(target):
        raise InvalidParameterError(
            f"{text} is a non-empty directory that is not a {what}; saffu replaces only an empty "
            f"directory or a {what} it wrote. Choose another path or empty it first")
    return target


def check_output_file(path: str | os.PathLike, owned: Callable[[Path], bool], what: str) -> Path:
    """``path`` as a file saffu may write: absent, or a ``what`` that ``owned`` recognizes."""
    target = Path(os.fspath(path)).expanduser()
    if not os.fspath(path).strip() or target.is_dir():
        raise InvalidParameterError(f"{os.fspath(path)!r} is not a file path for the {what}")
    if target.exists() and not owned(target):
        raise InvalidParameterError(f"{target} exists and is not a {what}; saffu replaces only a "
                                    f"{what} it wrote. Choose another path or remove it first")
    return target


@contextlib.contextmanager
def replace_directory(path: str | os.PathLike, owned: Callable[[Path], bool],
                      what: str) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces ``path`` when the block succeeds.

    ``path`` is checked first (:func:`check_output_directory`). If the block raises, the
    temporary folder is removed and ``path`` is untouched; a full disk, in the block or in the
    swap, raises :class:`~saffu.errors.DiskFullError` naming ``path``.
    """
    target = check_output_directory(path, owned, what)
    with reporting_full_disk(path):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.parent, target.name)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=_temporary_prefix(target), suffix=".tmp"))
        try:
            _apply_umask(tmp, directory=True)
            yield tmp
            _swap_in(tmp, target, owned, what)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # the new folder if the block failed, else the old


def _swap_in(tmp: Path, target: Path, owned: Callable[[Path], bool], what: str) -> None:
    """Put ``tmp`` at ``target``; afterwards ``tmp`` holds the old directory (or nothing)."""
    try:
        os.rename(tmp, target)  # target absent or an empty directory: a plain rename
        return
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    check_output_directory(target, owned, what)  # it may have changed while we worked
    if _exchange(tmp, target):
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=_temporary_prefix(target), suffix=".old"))
    os.rmdir(old)
    os.replace(target, old)
    os.replace(tmp, target)
    os.replace(old, tmp)  # removed with the temporary folder by the caller


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux's renameat2(RENAME_EXCHANGE); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # e.g. a file system without RENAME_EXCHANGE
    raise OSError(code, os.strerror(code), os.fspath(b))


def _temporary_writer(entry: Path, name: str | None = None) -> int | None:
    """The process id in a temporary's name ``.NAME.<pid>.<random>.tmp`` (or ``.old``), if
    ``entry`` is one (of ``name``, or of any name when ``name`` is None), else None."""
    match = _TEMPORARY.fullmatch(entry.name)
    if match is None or (name is not None and match["name"] != name):
        return None
    return int(match["pid"])


def _writer_alive(pid: int) -> bool:
    """Whether process ``pid`` (a temporary's writer) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path, name: str | None = None) -> None:
    """Remove the temporaries ``.NAME.<pid>.<random>.tmp`` in ``folder`` (of ``name``, or of
    any name when None) whose writing process is gone; anything else is left alone."""
    if not folder.is_dir():
        return
    pattern = f".{glob_escape(name)}.*.tmp" if name is not None else ".*.tmp"
    for entry in folder.glob(pattern):
        pid = _temporary_writer(entry, name)
        if pid is None or _writer_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()


def interrupted_replacement(target: Path) -> Path | None:
    """The hidden sibling holding the old directory if a replacement of ``target`` was cut
    between its two renames (platforms without an atomic exchange), else None."""
    for entry in sorted(target.parent.glob(f".{glob_escape(target.name)}.*.old")):
        pid = _temporary_writer(entry, target.name)
        if entry.is_dir() and pid is not None and not _writer_alive(pid):
            return entry
    return None


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, object], dict[str, str]]:
    """The arrays (NumPy) and the metadata of a safetensors file; never unpickles anything.

    Raises:
        FileNotFoundError: no file at ``path``.
        ModelFormatError: the file is not a readable safetensors file.
    """
    from safetensors import safe_open

    from saffu.errors import ModelFormatError

    try:
        with safe_open(os.fspath(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            arrays = {key: handle.get_tensor(key) for key in handle.keys()}
    except FileNotFoundError:
        raise
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise ModelFormatError(f"{path} is not a readable safetensors file: {error}") from error
    return arrays, metadata
