"""`foresplat render`: render a 3DGS .ply from a scene's cameras or orbit views, or preview a scene, to PNGs.

    foresplat render --ply refined.ply --scene synthetic:3 --views target --out renders/   # + PSNR / SSIM
    foresplat render --ply scene.ply --out renders/ --views 12 --width 320 --height 240  # orbit
    foresplat render --scene synthetic:3 --out preview/                                  # preview from points

With --ply and --scene, the .ply is rendered from the scene's own cameras (`--views all`, or the
held-out `target` / `context` views of the split recorded in the .ply's JSON by refine / predict, else
of --split), each render is written next to its ground truth (view_NNN.png, gt_NNN.png, NNN = the
scene's view index) and PSNR / SSIM against the images are printed and written to metrics.json.
For a .ply alone, cameras orbit the Gaussians' centre (median of the means) at a distance that fits the
bulk of them (90th percentile radius), looking at the centre, with `--up` as the world up axis.
For a scene alone (a synthetic one is generated at --width x --height) the scene's own cameras are used and
the Gaussians are a PREVIEW built from the scene's points (refine.init.init_from_points, opacity 0.9):
the ground-truth views are written next to the renders (target_XX.png). Every PNG is written
atomically; `--depth` adds normalized depth maps.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import tyro

from foresplat.commands._vocab import SPLIT_DEFAULT

from foresplat.cameras import Cameras, look_at
from foresplat.gaussians import Gaussians

_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0),
         "-x": (-1.0, 0.0, 0.0), "-y": (0.0, -1.0, 0.0), "-z": (0.0, 0.0, -1.0)}


@dataclass
class RenderCommand:
    """Render a .ply (from a scene's cameras or orbit views) or a scene preview to PNG images."""

    out: Path
    """Output folder (created)."""
    ply: Path | None = None
    """A 3DGS-layout .ply: rendered from --scene's cameras, else from orbit cameras."""
    scene: str | None = None
    """Scene (folder/file or synthetic:SEED): with --ply, render from its cameras and score against its images;
    alone, a preview built from its sparse points."""
    synthetic_seed: Annotated[int | None, tyro.conf.Suppress] = None
    """Deprecated spelling of --scene synthetic:SEED (kept for one release)."""
    width: int | None = None
    """Image width in pixels (orbit / synthetic preview: 256; a scene's views are resized to it: default
    the size in the .ply's JSON, else as loaded)."""
    height: int | None = None
    """Image height in pixels (as --width)."""
    backend: Literal["auto", "reference", "cpu", "gsplat"] = "auto"
    """Rasterizer backend (auto: gsplat on CUDA, else the native cpu kernel)."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Device to render on."""
    views: int | Literal["all", "target", "context"] | None = None
    """With --scene: all views (default), or the held-out target / the context views of the split; without:
    the number of orbit views (default 8)."""
    num_context: int = 12
    """With --scene and no .ply JSON: context views of the split (as refine / predict)."""
    num_target: int = 4
    """With --scene and no .ply JSON: held-out target views of the split (as refine / predict)."""
    split: Literal["random", "even", "first"] = SPLIT_DEFAULT
    """With --scene and no .ply JSON: how views are split (the default is the same in predict, refine and eval)."""
    split_seed: int = 0
    """Seed of the random split."""
    fov_deg: float = 50.0
    """Horizontal field of view of the orbit cameras, degrees (.ply only)."""
    elevation_deg: float = 20.0
    """Elevation of the orbit above the plane orthogonal to --up, degrees (.ply only)."""
    up: Literal["x", "y", "z", "-x", "-y", "-z"] = "z"
    """World up axis of the .ply (3DGS scenes from COLMAP are often -y)."""
    background: tuple[float, float, float] | None = None
    """Background colour (RGB in [0, 1]; default black, or with --scene the refinement's background from the
    .ply's JSON, else the scene's uniform masked-out colour)."""
    depth: bool = False
    """Also write depth maps (depth_XX.png, near = bright, normalized per image)."""

    def validate(self) -> "RenderCommand":
        """Raises ValueError naming the bad option."""
        if self.synthetic_seed is not None:
            if self.scene is not None:
                raise ValueError("--synthetic-seed (deprecated) and --scene: give only --scene synthetic:SEED")
            self.scene, self.synthetic_seed = f"synthetic:{int(self.synthetic_seed)}", None
        if self.ply is None and self.scene is None:
            raise ValueError("give --ply PATH (orbit views), --scene SCENE (a preview from its points), or both "
                             "(the .ply from the scene's cameras); got neither")
        if (self.width is not None and self.width <= 0) or (self.height is not None and self.height <= 0):
            raise ValueError(f"--width/--height: must be positive, got {self.width}x{self.height}")
        if self.ply is not None and self.scene is not None:
            self.views = "all" if self.views is None else self.views
            if not isinstance(self.views, str):
                raise ValueError(f"--views: with --scene expected all, target or context, got {self.views}")
        else:
            self.views = 8 if self.views is None else self.views
            if isinstance(self.views, str) or not 0 < self.views <= 100_000:
                raise ValueError(f"--views: without --scene (orbit views) expected a count in 1..100000, "
                                 f"got {self.views}")
        if not 0.0 < self.fov_deg < 179.0:
            raise ValueError(f"--fov-deg: must be in (0, 179), got {self.fov_deg}")
        if not -90.0 <= self.elevation_deg <= 90.0:  # NaN fails too
            raise ValueError(f"--elevation-deg: must be in [-90, 90], got {self.elevation_deg}")
        if self.background is not None and any(not 0.0 <= c <= 1.0 for c in self.background):
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

        w, h = cfg.width or 256, cfg.height or 256
        gaussians = check_gaussian_values(read_ply(cfg.ply), str(cfg.ply))
        check_memory(render_bytes(w, h) + gaussians_bytes(gaussians.num),
                     f"render of {gaussians.num} Gaussians at {w}x{h} px")
        cams = orbit_cameras(gaussians.means, cfg.views, w, h, cfg.fov_deg, cfg.elevation_deg, cfg.up)
        return gaussians, cams, None
    from foresplat.data.synthetic import SyntheticConfig, generate_scene
    from foresplat.refine.init import init_from_points

    from foresplat.limits import check_memory, render_bytes, scene_bytes

    kind, _, arg = str(cfg.scene).partition(":")
    if kind == "synthetic" and arg.lstrip("-").isdigit():
        w, h = cfg.width or 256, cfg.height or 256
        syn = SyntheticConfig(width=w, height=h)
        check_memory(scene_bytes(syn.num_views, w, h) + render_bytes(w, h),
                     f"synthetic scene preview of {syn.num_views} views at {w}x{h} px")
        scene = generate_scene(int(arg), syn)
    else:
        from foresplat.data.spec import load_scene_spec, resize_to

        scene = resize_to(load_scene_spec(cfg.scene), cfg.width, cfg.height).validate()
    if scene.points is None or scene.points.shape[0] == 0:
        raise ValueError(f"scene {cfg.scene}: has no sparse points to build a preview from")
    gaussians = init_from_points(scene.points, scene.point_colors, opacity=0.9)
    return gaussians, scene.cameras, scene.images


def write_view_renders(gaussians: Gaussians, views, indices: list[int], out: Path, *,
                       background=None, backend: str = "auto") -> dict:
    """Renders unbatched `gaussians` from every camera of `views` (a Scene whose view j is the scene's view
    indices[j]), writes view_NNN.png and gt_NNN.png (NNN = indices[j]) into `out` and returns
    {"views": [{"index", "psnr", "ssim", "render", "gt"}], "psnr", "ssim"} (means over the views)."""
    from foresplat.refine.loss import psnr, ssim
    from foresplat.render import render

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = gaussians.detach()
    bg = torch.tensor((0.0, 0.0, 0.0) if background is None else background, dtype=g.dtype, device=g.device)
    cams = views.cameras.to(device=g.device, dtype=g.dtype)
    rows = []
    with torch.no_grad():
        for j, idx in enumerate(indices):
            pred = render(g, cams.index([j]), backgrounds=bg.expand(1, 3), backend=backend).colors.clamp(0, 1)
            target = views.images[j:j + 1].to(pred)
            row = {"index": int(idx), "psnr": float(psnr(pred, target)[0]), "ssim": float(ssim(pred, target)),
                   "render": str(out / f"view_{idx:03d}.png"), "gt": str(out / f"gt_{idx:03d}.png")}
            _to_png(Path(row["render"]), pred[0])
            _to_png(Path(row["gt"]), target[0])
            rows.append(row)
    mean = (lambda k: sum(r[k] for r in rows) / len(rows)) if rows else (lambda k: None)
    return {"views": rows, "psnr": mean("psnr"), "ssim": mean("ssim")}


def run_scene(cfg: RenderCommand) -> dict:
    """--ply with --scene: renders the chosen views of the scene (see module docstring), writes the PNGs and
    metrics.json into cfg.out and returns the metrics (write_view_renders' dict + the scene and split)."""
    from foresplat.commands.view import load_views, sidecar
    from foresplat.data.scene import split_views
    from foresplat.io import atomic_write_json
    from foresplat.io.ply import check_gaussian_values, read_ply

    g = check_gaussian_values(read_ply(cfg.ply), str(cfg.ply))
    meta = sidecar(Path(cfg.ply))
    same_scene = meta.get("scene_spec") == cfg.scene
    scene, _ = load_views(cfg.scene, cfg.width, cfg.height, meta if same_scene else {},
                          min_views=max(16, cfg.num_context + cfg.num_target))
    if cfg.views == "all":
        indices, source = list(range(scene.num_views)), "all views"
    elif same_scene and meta.get(f"{cfg.views}_indices"):
        indices, source = [int(i) for i in meta[f"{cfg.views}_indices"]], f"{cfg.views} views of {cfg.ply.with_suffix('.json')}"
    else:
        split = split_views(scene, cfg.num_context, cfg.num_target, cfg.split, cfg.split_seed)
        indices = split.target_indices if cfg.views == "target" else split.context_indices
        source = f"{cfg.views} views of --split {cfg.split}"
    if not indices or max(indices) >= scene.num_views:
        raise ValueError(f"--views {cfg.views}: view indices {indices} do not fit scene {cfg.scene} "
                         f"({scene.num_views} views)")
    background = cfg.background
    if background is None:
        background = (meta.get("config") or {}).get("background") if same_scene else None
    if background is None:
        from foresplat.refine.init import scene_background

        background = scene_background(scene)
    device = torch.device(cfg.device)
    metrics = write_view_renders(g.to(device=device, dtype=torch.float32), scene.subset(indices), indices,
                                 Path(cfg.out), background=background, backend=cfg.backend)
    metrics.update({"ply": str(cfg.ply), "scene_spec": cfg.scene, "width": scene.width, "height": scene.height,
                    "views_from": source, "background": None if background is None else list(background)})
    atomic_write_json(Path(cfg.out) / "metrics.json", metrics)
    for row in metrics["views"]:
        print(f"view {row['index']:3d}: PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.4f}")
    print(f"mean over {len(indices)} {source}: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}")
    return metrics


def run(cfg: RenderCommand) -> list[Path]:
    """Renders every view of `cfg` into cfg.out; returns the written paths."""
    from tqdm import tqdm

    from foresplat.render import render

    from foresplat.io.outputs import check_output_dir

    cfg.validate()
    check_output_dir(cfg.out)
    if cfg.ply is not None and cfg.scene is not None:
        m = run_scene(cfg)
        return [Path(r[k]) for r in m["views"] for k in ("render", "gt")] + [Path(cfg.out) / "metrics.json"]
    gaussians, cams, targets = _load(cfg)
    device = torch.device(cfg.device)
    gaussians = gaussians.to(device=device, dtype=torch.float32)
    cams = cams.to(device=device, dtype=torch.float32)
    bg = torch.tensor(cfg.background or (0.0, 0.0, 0.0), dtype=torch.float32, device=device)
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
    from foresplat.commands._vocab import modernize

    cfg = tyro.cli(RenderCommand, args=modernize("render", argv), prog="foresplat render")
    written = run(cfg)  # errors: one line, exit 2, through foresplat.errors.run_command
    source = cfg.ply if cfg.ply is not None else f"scene {cfg.scene} (preview from points)"
    print(f"rendered {source}: {len(written)} images in {cfg.out}")
    return 0
