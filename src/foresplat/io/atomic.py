"""Atomic file output: write to a temporary file next to the target, fsync, then `os.replace`.

A reader never sees a half-written file: either the old content or the new one. On any error
(including KeyboardInterrupt) the temporary file is removed and the target is left untouched.
The temporary name ends with the target's full name, so writers that infer the format from the
suffix (PIL, matplotlib, numpy) behave as for the target. Parent folders are created.

Also: a target that exists but is not a regular file (a FIFO, a device, a folder) is refused
before anything is written (OutputPathError), never replaced; a failure reports the original
error (a failing clean-up never masks it); the new file gets the mode of a plain `open()` (0666
minus the umask) or the replaced file's mode, whatever the writer used (safetensors: 0600); and
temporary files of this naming left by a killed writer (dead process, or older than a day) are
removed on the next write to the same target.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_write", "atomic_open", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "remove_stale_temps", "check_writable_target"]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    # Best effort: makes the rename itself durable; some platforms/filesystems cannot open or
    # fsync a directory, which does not affect atomicity.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_TMP_RE = re.compile(r"^\.tmp-(\d+)-[0-9a-f]{8}-(.+)$")
_STALE_SECONDS = 24 * 3600


def _umask() -> int:
    """The process umask (read from /proc where possible: os.umask would change it briefly)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's) or unknowable: keep its file
    return True


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Deletes temporary files this module left for `target` (same folder, `.tmp-PID-HEX-<name>`)
    whose writer process is gone or that are older than a day; returns the removed paths."""
    target = Path(target)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if not m or m.group(2) != target.name:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            if _pid_alive(int(m.group(1))) and now - st.st_mtime < _STALE_SECONDS:
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def check_writable_target(target: Path) -> None:
    """Raises OutputPathError when `target` exists and is not a regular file (a FIFO, a device, a
    socket, a folder): the atomic rename would replace it."""
    from foresplat.errors import OutputPathError

    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):  # the folder checks report a bad parent
        return
    except OSError as e:
        raise OutputPathError(f"{target}: cannot be checked as an output ({e.strerror})") from e
    if stat.S_ISDIR(st.st_mode):
        raise OutputPathError(f"{target}: is a folder, expected an output file path")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise OutputPathError(f"{target}: is {kind}; refusing to replace it with a regular file")


def _set_mode(tmp: Path, target: Path) -> None:
    """Gives tmp the mode the target has, or a plain open()'s (0666 & ~umask) for a new file."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    try:
        os.chmod(tmp, mode)
    except OSError:
        pass


@contextmanager
def _atomic(path: str | os.PathLike, fsync_temp: bool) -> Iterator[Path]:
    target = Path(path)
    if target.name in ("", ".", ".."):
        raise ValueError(f"atomic_write: {str(path)!r} is not a file path")
    check_writable_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = target.with_name(f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{target.name}")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"atomic_write: nothing was written to the temporary file "
                                    f"{tmp} for {target}")
        _set_mode(tmp, target)
        if fsync_temp:
            _fsync_file(tmp)
        check_writable_target(target)  # it may have changed while the content was produced
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # never mask the original error with the clean-up's
            pass
        raise
    _fsync_dir(target.parent)


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary Path in the target's folder; write it, and on success it becomes `path`.

        with atomic_write("out/model.safetensors") as tmp:
            safetensors.torch.save_file(tensors, tmp)

    The temp file is fsynced and `os.replace`d onto `path` when the block ends normally; on an
    exception (KeyboardInterrupt included) it is deleted and `path` keeps its old content.
    Raises FileNotFoundError if the block wrote nothing.
    """
    with _atomic(path, fsync_temp=True) as tmp:
        yield tmp


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO[Any]]:
    """Like `open(path, mode)` for writing ("w"/"wb"/"x"-free modes), but atomic (see `atomic_write`).

    Text modes default to UTF-8. The file is flushed and fsynced before the rename.
    """
    if not mode.startswith("w") or "+" in mode:
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb' (optionally with 't'), got {mode!r}")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with _atomic(path, fsync_temp=False) as tmp:
        with open(tmp, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` to `path` atomically; returns the Path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Writes `text` to `path` atomically (no newline translation); returns the Path."""
    with atomic_open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2,
                      sort_keys: bool = False) -> Path:
    """Writes `obj` as JSON (plus a final newline) atomically; returns the Path.

    Strict JSON: NaN/inf and non-serializable objects raise ValueError/TypeError naming `path`
    before anything is written.
    """
    try:
        text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{path}: cannot write as JSON: {e}") from e
    return atomic_write_text(path, text + "\n")
