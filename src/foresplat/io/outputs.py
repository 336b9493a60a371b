"""Output-path checks run by every command BEFORE it starts its work.

    check_output_path(out, sidecars={out.with_suffix(".json"): "foresplat refine"})
    check_output_dir(cfg.out)

A bad output path (a FIFO or device, a folder where a file is expected, a missing or read-only
folder, a sidecar that would overwrite a file the command did not write, an output that is its
own sidecar) raises OutputPathError (a one-line CLI error, exit 2) before any computation.

A sidecar is a JSON file written next to an output (metrics, split, timing). It carries
`SIDECAR_KEY: {"command": ..., "output": <the output's file name>}` (see `sidecar_record`), so a
later run may replace it; any other existing file of that name is refused.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Mapping

from foresplat.errors import OutputPathError
from foresplat.io.atomic import check_writable_target

__all__ = ["SIDECAR_KEY", "check_output_path", "check_output_dir", "sidecar_record", "is_own_sidecar"]

SIDECAR_KEY = "written_by"
_LEGACY_SIDECAR_KEYS = ("scene_spec", "context_indices")  # sidecars of refine/predict before SIDECAR_KEY


def sidecar_record(command: str, output: str | os.PathLike) -> dict:
    """The entry to put in a sidecar JSON: {SIDECAR_KEY: {"command": command, "output": name}}."""
    return {SIDECAR_KEY: {"command": command, "output": Path(output).name}}


def is_own_sidecar(path: Path, output: Path) -> bool:
    """True when `path` is a JSON sidecar foresplat wrote for `output` (or a pre-marker refine /
    predict sidecar: a JSON object with scene_spec and context_indices)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode) or os.path.getsize(path) > 64 << 20:
            return False
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(obj, dict):
        return False
    rec = obj.get(SIDECAR_KEY)
    if isinstance(rec, dict):
        return rec.get("output") == output.name
    return SIDECAR_KEY not in obj and all(k in obj for k in _LEGACY_SIDECAR_KEYS)


def _check_parent(path: Path, *, create: bool, what: str) -> None:
    """The folder of `path` must exist and be writable (or, with create, its nearest existing
    ancestor must be a writable folder)."""
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    if create:
        while not probe.exists() and probe != probe.parent:
            if probe.is_symlink():  # a dangling link
                raise OutputPathError(f"{what} {path}: {probe} is a broken symbolic link")
            probe = probe.parent
    if not probe.exists():
        raise OutputPathError(f"{what} {path}: the folder {parent} does not exist (create it first)")
    if not probe.is_dir():
        raise OutputPathError(f"{what} {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: the folder {probe} is not writable")


def check_output_path(path: str | os.PathLike, *, sidecars: Mapping[str | os.PathLike, str] | None = None,
                      option: str = "--out", create_parents: bool = False) -> Path:
    """Checks an output FILE path before the work starts; returns it as a Path.

    path: must not exist, or be a regular file (it will be replaced atomically); its folder must
        exist (unless create_parents: then the nearest existing ancestor) and be writable.
    sidecars: {sidecar path: command} of the files written next to it; each must differ from
        `path` and either not exist or be a sidecar foresplat wrote for this output (see module).
    Raises OutputPathError naming `option`, the path and the problem.
    """
    out = Path(path)
    what = option
    if out.name in ("", ".", "..") or str(path).endswith(os.sep):
        raise OutputPathError(f"{what} {str(path)!r}: expected a file path, got a folder")
    check_writable_target(out)
    _check_parent(out, create=create_parents, what=what)
    for side in (sidecars or {}):
        side = Path(side)
        if os.path.abspath(side) == os.path.abspath(out):
            raise OutputPathError(f"{what} {out}: the output would be overwritten by its own sidecar "
                                  f"{side.name}; choose another suffix (e.g. {out.with_suffix('.ply').name})")
        if os.path.lexists(side):
            check_writable_target(side)
            if not is_own_sidecar(side, out):
                raise OutputPathError(f"{what} {out}: its sidecar {side} already exists and was not "
                                      "written by foresplat for this output; refusing to overwrite it "
                                      "(choose another output name)")
    return out


def check_output_dir(path: str | os.PathLike, *, option: str = "--out") -> Path:
    """Checks an output FOLDER (created if missing): not an existing non-folder, and the nearest
    existing ancestor a writable folder. Returns it as a Path; raises OutputPathError."""
    out = Path(path)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise OutputPathError(f"{option} {out}: exists and is not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise OutputPathError(f"{option} {out}: the folder is not writable")
        return out
    _check_parent(out, create=True, what=option)
    return out
