"""Scene specifications on the command line: a folder/file in any loader format, or `synthetic:SEED`."""

from __future__ import annotations

from pathlib import Path

from foresplat.data.scene import Scene


def load_scene_spec(spec: str, *, downscale: int | None = None, num_views: int = 16) -> Scene:
    """`synthetic:SEED` -> a generated scene with `num_views` views; anything else -> load_scene(spec)."""
    kind, _, arg = spec.partition(":")
    if kind == "synthetic" and arg:
        from foresplat.data.synthetic import SyntheticConfig, generate_scene

        try:
            seed = int(arg)
        except ValueError:
            raise ValueError(f"scene {spec!r}: expected synthetic:SEED with an integer seed") from None
        return generate_scene(seed, SyntheticConfig(num_views=num_views))
    from foresplat.data import load_scene

    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"scene {spec!r}: no such file or folder (or use synthetic:SEED)")
    return load_scene(path, **({} if downscale is None else {"downscale": downscale}))


def resize_to(scene: Scene, width: int | None, height: int | None) -> Scene:
    """The scene resized to width x height (a missing one follows the aspect ratio)."""
    if width is None and height is None:
        return scene
    if width is None:
        width = max(1, round(scene.width * height / scene.height))
    if height is None:
        height = max(1, round(scene.height * width / scene.width))
    return scene.resized(int(width), int(height))
