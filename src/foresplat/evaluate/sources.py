"""Where evaluation scenes come from: held-out synthetic seeds, scene folders, directories of them.

Every source is lazy (`SceneSource.load()`), so a broken scene is reported when it is evaluated
and never stops the others. A path is one scene when `foresplat.data.load_scene` recognises its
format (or it is a file); otherwise the scenes below it (`foresplat.data.catalog.discover_scenes`,
two levels deep) are the sources, optionally only the catalog's evaluation scenes.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from foresplat.evaluate.protocol import SceneSource

def synthetic_sources(count: int, config: Any = None, start_seed: int | None = None) -> list[SceneSource]:
    """`count` held-out synthetic scenes with seeds EVAL_SEED_START + i (never used for training).

    config: a foresplat.data.synthetic.SyntheticConfig (default: its defaults).
    """
    from foresplat.data.synthetic import EVAL_SEED_START, SyntheticConfig, generate_scene

    if count < 0:
        raise ValueError(f"synthetic scene count must be >= 0, got {count}")
    cfg = config or SyntheticConfig()
    first = EVAL_SEED_START if start_seed is None else int(start_seed)
    if first < EVAL_SEED_START:
        raise ValueError(f"held-out synthetic seeds start at {EVAL_SEED_START} (training uses lower seeds), "
                         f"got start_seed={first}")
    return [SceneSource(f"synthetic-{first + i}", f"synthetic seed {first + i}",
                        lambda seed=first + i: generate_scene(seed, replace(cfg)))
            for i in range(count)]


def _loader(path: Path, options: dict[str, Any]):
    def load():
        from foresplat.data import load_scene  # type: ignore[attr-defined]

        scene = load_scene(path, **options)
        return scene if scene.name and scene.name != "scene" else replace(scene, name=path.name)

    return load


def path_sources(path: str | Path, which: str = "all", **load_options: Any) -> list[SceneSource]:
    """One source per scene under `path`: the path itself when it is a scene folder or file, else
    the scenes found below it by `foresplat.data.catalog.discover_scenes` (sub-folders, and their
    sub-folders: a data root holding scenes and a `real/` folder of scenes), never a container
    folder itself.

    which: "all" (every scene found) or "evaluation": for a folder of scenes, only the catalog's
    evaluation scenes (visible + held-out real ones, `catalog.evaluation_scenes`) when it holds any
    of them, else every scene found; a single scene is always itself.
    load_options are passed to foresplat.data.load_scene (e.g. downscale, max_views).
    Raises FileNotFoundError when the path does not exist.
    """
    from foresplat.data.catalog import discover_scenes, evaluation_scenes, is_scene

    if which not in ("all", "evaluation"):
        raise ValueError(f"which must be 'all' or 'evaluation', got {which!r}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"scene path {p} does not exist")
    if p.is_file() or is_scene(p):
        return [SceneSource(p.stem if p.is_file() else p.name, str(p), _loader(p, load_options))]
    scenes = (evaluation_scenes(p) if which == "evaluation" else []) or discover_scenes(p)
    if not scenes:  # nothing recognised: let load_scene report why
        return [SceneSource(p.name, str(p), _loader(p, load_options))]
    return [SceneSource(d.name, str(d), _loader(d, load_options)) for d in scenes]


def find_shared_data(extra: Sequence[str | Path] = ()) -> Path | None:
    """The real-scene folder: $FORESPLAT_DATA, else a `shared/data` next to the repository (or the cwd)."""
    env = os.environ.get("FORESPLAT_DATA")
    if env:
        return Path(env) if Path(env).is_dir() else None
    import foresplat

    repo = Path(foresplat.__file__).resolve().parents[2]  # src/foresplat/__init__.py -> repo root
    for cand in [*map(Path, extra), repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data",
                 Path.cwd() / "shared" / "data"]:
        if cand.is_dir():
            return cand.resolve()
    return None
