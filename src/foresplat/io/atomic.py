"""Atomic file output: write to a temporary file next to the target, fsync, then `os.replace`.

A reader never sees a half-written file: either the old content or the new one. On any error
(including KeyboardInterrupt) the temporary file is removed and the target is left untouched.
The temporary name ends with the target's full name, so writers that infer the format from the
suffix (PIL, matplotlib, numpy) behave as for the target. Parent folders are created.
"""

from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_write", "atomic_open", "atomic_write_bytes", "atomic_write_text", "atomic_write_json"]


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


@contextmanager
def _atomic(path: str | os.PathLike, fsync_temp: bool) -> Iterator[Path]:
    target = Path(path)
    if target.name in ("", ".", ".."):
        raise ValueError(f"atomic_write: {str(path)!r} is not a file path")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{target.name}")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"atomic_write: nothing was written to the temporary file "
                                    f"{tmp} for {target}")
        if fsync_temp:
            _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
