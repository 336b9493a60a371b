"""SfM-like sparse points for scenes whose points are exact (synthetic): the realistic points baseline.

The synthetic generator back-projects random pixels of each view's ground-truth depth: exact
surface samples wherever the image is, an oracle no user has. A COLMAP model differs in three
ways, which `sfm_like_points` imitates:

    texture   features are only detected where the image has gradient: a point is kept with
              probability min(1, |grad I| / texture_threshold) at its pixel (flat regions, sky and
              untextured walls get few or none);
    noise     triangulated depth is noisy: the point moves along its viewing ray by a factor
              exp(N(0, depth_noise)) of its depth;
    outliers  a fraction of the points are wrong matches: replaced by points uniform in the box
              spanned by the kept points (enlarged by 10%).

Deterministic per seed. Needs `point_views` (the view each point came from).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from foresplat.data.scene import Scene


@dataclass
class SfmLikeConfig:
    """How far the synthetic points are degraded towards a real SfM model (module docstring)."""

    texture_threshold: float = 0.08
    """Gradient magnitude (colour units per pixel) at which a point is always kept."""
    depth_noise: float = 0.02
    """Standard deviation of the log-depth noise along the viewing ray."""
    outlier_fraction: float = 0.05
    """Fraction of the kept points replaced by uniform outliers."""
    seed: int = 0
    """Seed of every random draw."""


def _gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """images [V, H, W, 3] -> |grad| [V, H, W] (central differences of the grey image, edges replicated)."""
    grey = images.float().mean(-1)[:, None]  # [V, 1, H, W]
    pad = torch.nn.functional.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx = (pad[..., 1:-1, 2:] - pad[..., 1:-1, :-2]) / 2
    gy = (pad[..., 2:, 1:-1] - pad[..., :-2, 1:-1]) / 2
    return torch.sqrt(gx**2 + gy**2)[:, 0]


def sfm_like_points(scene: Scene, config: SfmLikeConfig | None = None) -> Scene:
    """The scene with its exact points replaced by SfM-like ones (module docstring); the other fields
    are unchanged. Raises ValueError when the scene has no points or no point_views."""
    c = config or SfmLikeConfig()
    if scene.points is None or scene.points.shape[0] == 0:
        raise ValueError(f"sfm_like_points: scene {scene.name!r} has no sparse points")
    if scene.point_views is None:
        raise ValueError(f"sfm_like_points: scene {scene.name!r} has no point_views (needed to find each "
                         "point's pixel and viewing ray)")
    g = torch.Generator().manual_seed(int(c.seed))
    pts = scene.points.double()  # [P, 3]
    pv = scene.point_views  # [P]
    cams = scene.cameras
    uv, _ = cams.project(pts.to(cams.viewmats.dtype))  # [C, P, 2] (each point is read in its own view)
    P = pts.shape[0]
    ar = torch.arange(P)
    u = uv[pv, ar, 0].floor().long().clamp(0, scene.width - 1)
    v = uv[pv, ar, 1].floor().long().clamp(0, scene.height - 1)
    grad = _gradient_magnitude(scene.images)[pv, v, u]  # [P]
    keep = torch.rand(P, generator=g, dtype=torch.float64) < (grad.double() / c.texture_threshold).clamp(max=1)
    if not bool(keep.any()):
        keep[torch.argmax(grad)] = True
    centers = cams.centers().double()[pv]  # [P, 3] camera centre of each point's view
    factor = torch.exp(torch.randn(P, generator=g, dtype=torch.float64) * c.depth_noise)[:, None]
    noisy = centers + (pts - centers) * factor  # [P, 3] moved along the viewing ray
    noisy, views = noisy[keep], pv[keep]
    colors = None if scene.point_colors is None else scene.point_colors[keep]
    n_out = int(round(c.outlier_fraction * noisy.shape[0]))
    if n_out > 0:
        lo, hi = noisy.min(0).values, noisy.max(0).values
        pad = 0.1 * (hi - lo)
        idx = torch.randperm(noisy.shape[0], generator=g)[:n_out]
        noisy[idx] = lo - pad + (hi - lo + 2 * pad) * torch.rand(n_out, 3, generator=g, dtype=torch.float64)
        if colors is not None:
            colors = colors.clone()
            colors[idx] = torch.rand(n_out, 3, generator=g)
    return replace(scene, points=noisy.to(scene.points.dtype), point_colors=colors, point_views=views)
