"""Scene discovery and the evaluation / training split of the real data.

    discover_scenes(root)      every scene folder under root (root itself, its sub-folders, or
                               their sub-folders: ../shared/data holds 3 scenes and real/ with 18)
    VISIBLE_EVAL_SCENES        the visible evaluation scenes: never trained on
    HELDOUT_REAL_SCENES        real scenes left out of training for the leave-scenes-out report
    training_scenes(root)      discovered scenes minus both sets
    evaluation_scenes(root)    the visible scenes plus the held-out ones, those that exist under root

A folder is a scene when `foresplat.data.loaders.detect_format` recognises it; a folder that only
holds scenes (like `real/`) is a container and never reported as a scene. Scenes are matched to
the two sets by folder name.
"""

from __future__ import annotations

from pathlib import Path

VISIBLE_EVAL_SCENES: tuple[str, ...] = ("llff_fern", "dtu_scan24", "nerf_synthetic_lego")
HELDOUT_REAL_SCENES: tuple[str, ...] = ("capture_caesar", "nerd_maryrose", "middlebury_templering",
                                        "strecha_herzjesusP25")
MAX_DEPTH = 2
"""How many folder levels below root are searched (root/scene, root/container/scene)."""

__all__ = ["VISIBLE_EVAL_SCENES", "HELDOUT_REAL_SCENES", "discover_scenes", "training_scenes",
           "evaluation_scenes", "is_scene"]


def is_scene(path: str | Path) -> bool:
    """Whether `path` is a folder (or file) whose scene format `detect_format` recognises."""
    from foresplat.data.loaders import DataFormatError, detect_format

    try:
        detect_format(path)
        return True
    except (DataFormatError, FileNotFoundError, OSError):
        return False


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir()
                      if p.is_dir() and not p.name.startswith((".", "_")))
    except OSError:
        return []


def discover_scenes(root: str | Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Scene folders under `root`, sorted by path: [root] when root is a scene, else the scenes
    among its sub-folders, searching up to `max_depth` levels (a scene's own sub-folders are not
    searched). Raises FileNotFoundError when root does not exist."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    if is_scene(root):
        return [root]
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        for child in _children(folder):
            if is_scene(child):
                found.append(child)
            elif depth < max_depth:
                walk(child, depth + 1)

    if root.is_dir():
        walk(root, 1)
    return sorted(found)


def training_scenes(root: str | Path) -> list[Path]:
    """The discovered scenes that may be trained on: all but VISIBLE_EVAL_SCENES and HELDOUT_REAL_SCENES."""
    excluded = set(VISIBLE_EVAL_SCENES) | set(HELDOUT_REAL_SCENES)
    return [p for p in discover_scenes(root) if p.name not in excluded]


def evaluation_scenes(root: str | Path) -> list[Path]:
    """The visible evaluation scenes, then the held-out real scenes, each where it exists under
    root (in the order of the two tuples)."""
    by_name: dict[str, Path] = {}
    for p in discover_scenes(root):
        by_name.setdefault(p.name, p)
    return [by_name[n] for n in (*VISIBLE_EVAL_SCENES, *HELDOUT_REAL_SCENES) if n in by_name]
