"""`foresplat view PLY_OR_RUN [--scene SCENE] [--port N]`: a browser viewer (viser) of a .ply.

    foresplat view refined.ply                       # scene from refined.json (written by refine/predict)
    foresplat view g0.ply --scene synthetic:3 --port 8080
    foresplat view runs/eval/ply                     # a folder: pick any of its .ply files in the page

Shows the splats, the scene's cameras (frustums textured with their images; click one, or pick a
view and press "go to camera"), and for the chosen view the ground-truth image beside foresplat's
render of it. The scene comes from --scene, else from the JSON that `foresplat refine` / `predict`
write next to their .ply (scene spec, size, held-out target views). Serves on 127.0.0.1 (use --host to
expose it; a warning is printed). Runs until Ctrl-C (or --max-seconds). Needs the optional extra
`foresplat[viewer]` (viser).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro


@dataclass
class ViewCommand:
    """Open a browser viewer of a .ply (or a folder of them) with the scene's cameras and images."""

    path: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="PLY_OR_RUN")]
    """A 3DGS .ply, or a folder holding .ply files (searched recursively)."""
    scene: str | None = None
    """Scene (folder/file or synthetic:SEED) whose cameras and images to show (default: from the .ply's JSON)."""
    width: int | None = None
    """Resize the scene's views to this width (default: the size in the .ply's JSON, else as loaded)."""
    height: int | None = None
    """Resize the scene's views to this height (default: the size in the .ply's JSON, else as loaded)."""
    host: str = "127.0.0.1"
    """Address to serve on (anything but 127.0.0.1/localhost exposes the viewer to the network)."""
    port: int = 8080
    """Port to serve on (the next free one when taken; 0 = any free port)."""
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Background colour of foresplat's renders and captured frames (RGB in [0, 1])."""
    backend: Literal["auto", "reference", "cpu", "gsplat"] = "auto"
    """Rasterizer of the side-by-side render."""
    capture: Path | None = None
    """Write the first browser's frame from scene view --capture-view to this PNG (+ .json camera) once it shows."""
    capture_view: int = 0
    """Scene view (camera index) of --capture."""
    max_seconds: float | None = None
    """Stop after this many seconds (default: run until Ctrl-C)."""


def ply_files(path: Path) -> list[Path]:
    """The .ply files `path` names: itself, or those under a folder (sorted). Raises FileNotFoundError."""
    if path.is_file():
        if path.suffix.lower() != ".ply":
            raise ValueError(f"{path}: expected a .ply file or a folder of them")
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*.ply") if p.is_file())
        if not found:
            raise FileNotFoundError(f"{path}: no .ply files in this folder")
        return found
    raise FileNotFoundError(f"{path}: no such .ply file or folder")


def sidecar(ply: Path) -> dict:
    """The JSON `foresplat refine` / `predict` write next to a .ply (same stem), or {} when absent/unreadable."""
    p = ply.with_suffix(".json")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_views(spec: str, width: int | None, height: int | None, meta: dict, min_views: int = 16):
    """(scene, labels): the scene resized as asked (or as recorded in `meta`), each view labelled
    context/target from meta's indices (else "view i"); a synthetic scene gets at least `min_views`
    views and all of meta's."""
    from foresplat.data.spec import load_scene_spec, resize_to

    n_views = len(meta.get("context_indices", [])) + len(meta.get("target_indices", []))
    scene = load_scene_spec(spec, num_views=max(min_views, n_views))
    if width is None and height is None and "width" in meta and "height" in meta:
        width, height = int(meta["width"]), int(meta["height"])
    scene = resize_to(scene, width, height).validate()
    ctx, tgt = set(meta.get("context_indices", [])), set(meta.get("target_indices", []))
    labels = [f"target {i}" if i in tgt else f"context {i}" if i in ctx else f"view {i}"
              for i in range(scene.num_views)]
    return scene, labels


def write_frame(path: Path, frame, extra: dict | None = None) -> None:
    """Writes a captured Frame as PNG and its camera (+ `extra`) as JSON next to it, atomically."""
    from PIL import Image

    from foresplat.io import atomic_write_json
    from foresplat.io.atomic import atomic_write

    with atomic_write(path) as tmp:
        Image.fromarray(np.ascontiguousarray(frame.image)).save(tmp, format="PNG")
    atomic_write_json(path.with_suffix(".json"), {**frame.meta(), **(extra or {})})


def run(cmd: ViewCommand) -> int:
    """Serves the viewer until Ctrl-C or --max-seconds; returns the exit code."""
    from foresplat.io.ply import read_ply
    from foresplat.viewer import Viewer, require_viser

    require_viser()
    files = ply_files(Path(cmd.path))
    meta = sidecar(files[0])
    spec = cmd.scene or meta.get("scene_spec")
    if cmd.scene is not None and meta.get("scene_spec") != cmd.scene:
        meta = {}  # the JSON describes another scene: its size and split do not apply
    scene, labels = load_views(spec, cmd.width, cmd.height, meta) if spec else (None, None)
    if cmd.capture is not None and scene is None:
        raise ValueError("--capture: needs a scene's cameras (give --scene, or a .ply with its JSON)")
    if scene is not None and not 0 <= cmd.capture_view < scene.num_views:
        raise ValueError(f"--capture-view: {cmd.capture_view} outside 0..{scene.num_views - 1}")
    g = read_ply(files[0])
    viewer = Viewer(cmd.host, cmd.port, background=cmd.background, backend=cmd.backend,
                    title=f"foresplat: {files[0].name}")
    try:
        if scene is not None:
            viewer.set_views(scene, labels)
        viewer.set_gaussians(g)
        viewer.set_status(f"{files[0]}: {g.num} Gaussians, SH degree {g.sh_degree}"
                          + (f"; scene {scene.name} ({scene.num_views} views)" if scene is not None else ""))
        if len(files) > 1:
            names = [str(p.relative_to(cmd.path)) for p in files]
            choose = viewer.server.gui.add_dropdown("ply", tuple(names), initial_value=names[0])

            def switch(_) -> None:
                p = files[names.index(choose.value)]
                g2 = read_ply(p)
                viewer.set_gaussians(g2)
                viewer.set_status(f"{p}: {g2.num} Gaussians, SH degree {g2.sh_degree}")

            choose.on_update(switch)
        print(f"foresplat view: {viewer.url} ({files[0]}, {g.num} Gaussians); Ctrl-C to stop", flush=True)
        end = None if cmd.max_seconds is None else time.monotonic() + cmd.max_seconds
        if cmd.capture is not None:
            left = 600.0 if end is None else max(1.0, end - time.monotonic())
            frame = viewer.capture(viewer.view_camera(cmd.capture_view), timeout=left)
            write_frame(Path(cmd.capture), frame, {"view": cmd.capture_view, "ply": str(files[0])})
            print(f"foresplat view: wrote the browser's frame of view {cmd.capture_view} to {cmd.capture}",
                  flush=True)
        while end is None or time.monotonic() < end:
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("foresplat view: stopped", file=sys.stderr)
    finally:
        viewer.close()
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `foresplat view`."""
    return run(tyro.cli(ViewCommand, args=argv, prog="foresplat view"))
