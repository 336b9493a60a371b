"""Filters on a prediction before refinement: which predicted Gaussians to keep.

Depth consistency (the fusion check of MVS pipelines). A pixel-aligned predictor returns one
Gaussian per view and prediction pixel, view-major then row-major (N = V * h * w), so each view's
Gaussians form a depth map D_v [h, w] (camera z of their means). A Gaussian of view i is
*consistent* with view j when its mean, projected into j, lands on a pixel whose own Gaussian lies at
the same depth there: |z_j - D_j(p)| <= rel_tol * D_j(p). Keeping only the Gaussians consistent with
at least `min_views` other views drops the ones whose predicted depth no other view confirms
(floaters in front of an object, background pixels put at arbitrary depths).

Foreground. The refiner composites onto a known background colour (black, or a masked scene's
uniform background: refine.init.scene_background). A predicted Gaussian of that colour adds nothing
where the background shows and occludes wherever it lies in front of the object, so it is dropped.

docs/REAL.md measures what each does to refinement.
"""

from __future__ import annotations

import torch

from foresplat.gaussians import Gaussians, sh_dc_to_rgb
from foresplat.models.geometry import scale_intrinsics

DEFAULT_BACKGROUND_TOL = 0.06
"""Largest per-channel difference of a Gaussian's base colour to the background that drops it."""
DEFAULT_REL_TOL = 0.15
"""Relative depth tolerance of the `+consistent` starts (docs/REAL.md: at 64 px it keeps 35-80% of the
shipped predictor's Gaussians on the evaluation scenes; 0.05 kept 15-57% on the held-out captures
and lost on all but one)."""


def depth_consistent(means: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, height: int, width: int,
                     rel_tol: float = DEFAULT_REL_TOL, min_views: int = 1) -> torch.Tensor:
    """Which pixel-aligned Gaussians other views confirm.

    means [V*h*w, 3] world positions, view-major then row-major pixels of an h x w grid per view;
    viewmats [V, 4, 4] OpenCV world-to-camera; Ks [V, 3, 3] intrinsics *of the h x w grid* (pixel
    centres at +0.5). Returns a bool mask [V*h*w]: True where at least `min_views` views j other than
    the Gaussian's own project it (z > 0, inside the grid) onto a pixel whose Gaussian of view j has
    camera-j depth d with |z_j - d| <= rel_tol * d.
    """
    V = viewmats.shape[0]
    if means.shape != (V * height * width, 3):
        raise ValueError(f"depth_consistent: means must be [{V}*{height}*{width}, 3] (pixel-aligned, view-major), "
                         f"got {list(means.shape)}")
    if not rel_tol > 0 or min_views < 1:
        raise ValueError(f"depth_consistent: need rel_tol > 0 and min_views >= 1, got {rel_tol}, {min_views}")
    m = means.reshape(V, height * width, 3)
    R, t = viewmats[:, :3, :3].to(m), viewmats[:, :3, 3].to(m)
    own_depth = (torch.einsum("vij,vnj->vni", R, m) + t[:, None])[..., 2]  # [V, hw]: the depth maps D_v
    votes = torch.zeros(V, height * width, dtype=torch.int64, device=m.device)
    for j in range(V):
        cam = torch.einsum("ij,vnj->vni", R[j], m) + t[j]  # every Gaussian in camera j [V, hw, 3]
        z = cam[..., 2]
        uv = torch.einsum("ij,vnj->vni", Ks[j].to(m), cam)[..., :2] / z.clamp_min(1e-12)[..., None]
        col, row = torch.floor(uv[..., 0]).long(), torch.floor(uv[..., 1]).long()
        inside = (z > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
        d = own_depth[j][(row.clamp(0, height - 1) * width + col.clamp(0, width - 1))]
        agree = inside & (d > 0) & ((z - d).abs() <= rel_tol * d)
        agree[j] = False  # a view does not confirm its own Gaussians
        votes += agree
    return (votes >= min_views).reshape(-1)


def keep_depth_consistent(gaussians: Gaussians, scene, rel_tol: float = DEFAULT_REL_TOL,
                          min_views: int = 1) -> Gaussians:
    """The Gaussians [N] of a pixel-aligned prediction from `scene`'s views (a foresplat Scene, the
    views the predictor saw) that `depth_consistent` keeps. The prediction grid is inferred from N:
    N = V * (H/s) * (W/s) for an integer stride s; anything else is not pixel-aligned (ValueError)."""
    V, H, W = scene.num_views, scene.height, scene.width
    n = gaussians.num
    stride = next((s for s in (1, 2, 4, 8, 16) if H % s == 0 and W % s == 0 and V * (H // s) * (W // s) == n), None)
    if stride is None:
        raise ValueError(f"depth consistency: {n} Gaussians are not one per pixel of a strided grid of the "
                         f"{V} views of {W}x{H} (a pixel-aligned prediction from these views is needed)")
    h, w = H // stride, W // stride
    Ks = scale_intrinsics(scene.cameras.Ks, w / W, h / H)
    keep = depth_consistent(gaussians.means.detach(), scene.cameras.viewmats, Ks, h, w, rel_tol, min_views)
    if not bool(keep.any()):
        raise ValueError(f"depth consistency: no Gaussian of the {n} is confirmed by {min_views} other view(s) "
                         f"within {rel_tol:g} relative depth (do the views overlap?)")
    return gaussians.select(keep.nonzero()[:, 0])


def keep_foreground(gaussians: Gaussians, background: tuple[float, float, float] | None,
                    tol: float = DEFAULT_BACKGROUND_TOL) -> Gaussians:
    """The Gaussians [N] whose base colour (the SH DC term, clamped to [0, 1]) differs from
    `background` (RGB in [0, 1]; None = black, the renderer's default) by more than `tol` in some
    channel. Raises ValueError when none is left."""
    if not 0 <= tol < 1:
        raise ValueError(f"keep_foreground: tol must be in [0, 1), got {tol}")
    bg = torch.tensor(background if background is not None else (0.0, 0.0, 0.0), dtype=gaussians.sh.dtype,
                      device=gaussians.sh.device)
    rgb = sh_dc_to_rgb(gaussians.sh[:, 0].detach()).clamp(0, 1)  # [N, 3]
    keep = ((rgb - bg).abs() > tol).any(-1)
    if not bool(keep.any()):
        raise ValueError(f"foreground: all {gaussians.num} Gaussians have the background colour {bg.tolist()} "
                         f"(within {tol:g})")
    return gaussians.select(keep.nonzero()[:, 0])


def filter_prediction(gaussians: Gaussians, scene, *, consistent: float | None = None, foreground: bool = False,
                      background: tuple[float, float, float] | None = None) -> Gaussians:
    """The filters a command asks for, in order: keep_depth_consistent at relative tolerance `consistent`
    (None: skipped; `scene` = the views the prediction came from, at the size it saw), then
    keep_foreground against `background` (None: black) when `foreground`. Gaussians [N] -> [N']."""
    if consistent is not None:
        gaussians = keep_depth_consistent(gaussians, scene, rel_tol=consistent)
    return keep_foreground(gaussians, background) if foreground else gaussians
