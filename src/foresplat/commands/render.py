"""`foresplat render`: render a 3DGS .ply (orbit views) or a preview of a built-in synthetic scene to PNGs.

    foresplat render --ply scene.ply --out renders/ --views 12 --width 320 --height 240
    foresplat render --synthetic-seed 3 --out preview/

For a .ply, cameras orbit the Gaussians' centre (median of the means) at a distance that fits the
bulk of them (90th percentile radius), looking at the centre, with `--up` as the world up axis.
For a synthetic scene (foresplat.data.synthetic.generate_scene) the scene's own cameras are used and
the Gaussians are a PREVIEW built from the scene's points (refine.init.init_from_points, opacity 0.9):
the ground-truth views are written next to the renders (target_XX.png). Every PNG is written
atomically; `--depth` adds normalized depth maps.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro

from foresplat.cameras import Cameras, look_at
from foresplat.gaussians import Gaussians

_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0),
         "-x": (-1.0, 0.0, 0.0), "-y": (0.0, -1.0, 0.0), "-z": (0.0, 0.0, -1.0)}


@dataclass
class RenderCommand:
    """Render a .ply or a synthetic scene preview to PNG images."""

    out: Path
    """Output folder (created)."""
    ply: Path | None = None
    """A 3DGS-layout .ply to render from orbit cameras."""
    synthetic_seed: int | None = None
    """Render a preview (Gaussians from the scene's points) of synthetic scene SEED instead."""
    width: int = 256
    """Image width in pixels."""
    height: int = 256
    """Image height in pixels."""
    backend: Literal["auto", "reference", "cpu", "gsplat"] = "auto"
    """Rasterizer backend (auto: gsplat on CUDA, else the native cpu kernel)."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Device to render on."""
    views: int = 8
    """Number of orbit views (.ply only)."""
    fov_deg: float = 50.0
    """Horizontal field of view of the orbit cameras, degrees (.ply only)."""
    elevation_deg: float = 20.0
    """Elevation of the orbit above the plane orthogonal to --up, degrees (.ply only)."""
    up: Literal["x", "y", "z", "-x", "-y", "-z"] = "z"
    """World up axis of the .ply (3DGS scenes from COLMAP are often -y)."""
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Background colour (RGB in [0, 1])."""
    depth: bool = False
    """Also write depth maps (depth_XX.png, near = bright, normalized per image)."""

    def validate(self) -> "RenderCommand":
        """Raises ValueError naming the bad option."""
        if (self.ply is None) == (self.synthetic_seed is None):
            raise ValueError("foresplat render: give exactly one of --ply PATH or --synthetic-seed N")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"--width/--height: must be positive, got {self.width}x{self.height}")
        if self.views <= 0:
            raise ValueError(f"--views: must be positive, got {self.views}")
        if not 0.0 < self.fov_deg < 179.0:
            raise ValueError(f"--fov-deg: must be in (0, 179), got {self.fov_deg}")
        if any(not 0.0 <= c <= 1.0 for c in self.background):
            raise ValueError(f"--background: RGB values must be in [0, 1], got {self.background}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device available")
        return self


def orbit_cameras(means: torch.Tensor, views: int, width: int, height: int, fov_deg: float,
                  elevation_deg: float, up: str) -> Cameras:
    """`views` cameras on a circle around the median of means [N, 3], looking at it, far enough that
    a sphere holding 90% of the means fits the field of view. OpenCV convention, float32."""
    pts = means.detach().float().cpu()
    centre = pts.median(dim=0).values if pts.shape[0] else torch.zeros(3)
    radius = float(torch.quantile((pts - centre).norm(dim=-1), 0.9)) if pts.shape[0] else 1.0
    radius = max(radius, 1e-3)
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    half_fov = math.atan(0.5 * min(width, height) / f)
    dist = 1.1 * radius / math.sin(half_fov)
    up_v = torch.tensor(_AXES[up])
    # an orthonormal basis (a, b) of the plane orthogonal to `up`
    helper = torch.tensor([1.0, 0.0, 0.0]) if abs(float(up_v[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    a = torch.nn.functional.normalize(torch.linalg.cross(up_v, helper), dim=0)
    b = torch.linalg.cross(up_v, a)
    el = math.radians(elevation_deg)
    angles = torch.arange(views, dtype=torch.float32) * (2 * math.pi / views)
    dirs = (math.cos(el) * (torch.cos(angles)[:, None] * a + torch.sin(angles)[:, None] * b)
            + math.sin(el) * up_v)  # [V, 3]
    eyes = centre + dist * dirs
    viewmats = look_at(eyes, centre.expand(views, 3), up_v)
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]]).expand(views, 3, 3)
    return Cameras(viewmats, K.clone(), width, height)


def _to_png(path: Path, image: torch.Tensor) -> None:
    """Writes an [H, W, 3] or [H, W] image in [0, 1] as 8-bit PNG, atomically."""
    from PIL import Image

    from foresplat.io.atomic import atomic_write

    arr = (image.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    with atomic_write(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def _depth_image(depth: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """[H, W, 1] expected depth -> [H, W] in [0, 1]: near bright, far dark (2-98% quantiles), empty 0."""
    d, a = depth[..., 0], alpha[..., 0]
    valid = a > 0.5
    if not bool(valid.any()):
        return torch.zeros_like(d)
    q = torch.quantile(d[valid].float(), torch.tensor([0.02, 0.98], device=d.device))
    lo, hi = float(q[0]), float(q[1])  # robust to a few far outliers
    scaled = 1.0 - (d - lo) / max(hi - lo, 1e-12)
    return torch.where(valid, 0.1 + 0.9 * scaled.clamp(0, 1), torch.zeros_like(d))


def _load(cfg: RenderCommand) -> tuple[Gaussians, Cameras, torch.Tensor | None]:
    """Gaussians, cameras and (synthetic only) ground-truth images [V, H, W, 3]."""
    if cfg.ply is not None:
        from foresplat.io.ply import check_gaussian_values, read_ply
        from foresplat.limits import check_memory, gaussians_bytes, render_bytes

        gaussians = check_gaussian_values(read_ply(cfg.ply), str(cfg.ply))
        check_memory(render_bytes(cfg.width, cfg.height) + gaussians_bytes(gaussians.num),
                     f"render of {gaussians.num} Gaussians at {cfg.width}x{cfg.height} px")
        cams = orbit_cameras(gaussians.means, cfg.views, cfg.width, cfg.height, cfg.fov_deg,
                             cfg.elevation_deg, cfg.up)
        return gaussians, cams, None
    from foresplat.data.synthetic import SyntheticConfig, generate_scene
    from foresplat.refine.init import init_from_points

    from foresplat.limits import check_memory, render_bytes, scene_bytes

    syn = SyntheticConfig(width=cfg.width, height=cfg.height)
    check_memory(scene_bytes(syn.num_views, cfg.width, cfg.height) + render_bytes(cfg.width, cfg.height),
                 f"synthetic scene preview of {syn.num_views} views at {cfg.width}x{cfg.height} px")
    scene = generate_scene(int(cfg.synthetic_seed), syn)
    if scene.points is None or scene.points.shape[0] == 0:
        raise ValueError(f"synthetic scene {cfg.synthetic_seed}: has no points to build a preview from")
    gaussians = init_from_points(scene.points, scene.point_colors, opacity=0.9)
    return gaussians, scene.cameras, scene.images


def run(cfg: RenderCommand) -> list[Path]:
    """Renders every view of `cfg` into cfg.out; returns the written paths."""
    from tqdm import tqdm

    from foresplat.render import render

    from foresplat.io.outputs import check_output_dir

    cfg.validate()
    check_output_dir(cfg.out)
    gaussians, cams, targets = _load(cfg)
    device = torch.device(cfg.device)
    gaussians = gaussians.to(device=device, dtype=torch.float32)
    cams = cams.to(device=device, dtype=torch.float32)
    bg = torch.tensor(cfg.background, dtype=torch.float32, device=device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with torch.no_grad():
        for i in tqdm(range(cams.num), desc="render", unit="view", disable=not sys.stderr.isatty()):
            res = render(gaussians, cams.index(i), backgrounds=bg, backend=cfg.backend)
            written.append(out / f"view_{i:02d}.png")
            _to_png(written[-1], res.colors[0])
            if cfg.depth:
                written.append(out / f"depth_{i:02d}.png")
                _to_png(written[-1], _depth_image(res.depths[0], res.alphas[0]))
            if targets is not None:
                written.append(out / f"target_{i:02d}.png")
                _to_png(written[-1], targets[i])
    return written


def main(argv: list[str]) -> int:
    """Entry point of `foresplat render`."""
    cfg = tyro.cli(RenderCommand, args=argv, prog="foresplat render")
    try:
        written = run(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"foresplat render: {e}", file=sys.stderr)
        return 2
    source = cfg.ply if cfg.ply is not None else f"synthetic scene {cfg.synthetic_seed} (preview from points)"
    print(f"rendered {source}: {len(written)} images in {cfg.out}")
    return 0
