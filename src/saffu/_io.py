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
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from saffu.errors import InvalidParameterError

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _apply_umask(path: str | os.PathLike, directory: bool) -> None:
    """mkstemp/mkdtemp make private (0600/0700) entries; give them the modes a user expects."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
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
    temporary folder is removed and ``path`` is untouched.
    """
    target = check_output_directory(path, owned, what)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
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


def _writer_alive(entry: Path, target: Path) -> bool:
    """Whether the process whose id is in a temporary's name ``.NAME.<pid>.<random>.tmp`` runs."""
    rest = entry.name[len(target.name) + 2:]
    pid_text = rest.split(".", 1)[0]
    if not pid_text.isdigit():
        return True  # not one of ours: leave it alone
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: Path) -> None:
    """Remove ``.NAME.<pid>.*.tmp`` siblings of ``target`` left by writers that are gone."""
    if not target.parent.is_dir():
        return
    for entry in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
        if not _writer_alive(entry, target):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()


def interrupted_replacement(target: Path) -> Path | None:
    """The hidden sibling holding the old directory if a replacement of ``target`` was cut
    between its two renames (platforms without an atomic exchange), else None."""
    for entry in sorted(target.parent.glob(f".{glob_escape(target.name)}.*.old")):
        if entry.is_dir() and not _writer_alive(entry, target):
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
