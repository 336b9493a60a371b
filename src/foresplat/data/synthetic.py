"""Procedural synthetic scenes: ray-traced textured primitives with ground truth depth and points.

Independent of Gaussian splatting (nothing here uses foresplat.render): a scene is a random
layout (foresplat.data.synthetic_layout: spheres, boxes, cylinders on a textured ground, an
optional open-top room or back wall, an emissive sky dome with clouds, one directional light)
ray-traced with Lambertian shading and hard or soft shadows (foresplat.data.synthetic_render).

    generate_scene(seed, config=SyntheticConfig()) -> Scene
        images  [V, H, W, 3] float32 in [0, 1]; edge pixels (see edge_pixels) average
                config.supersample^2 stratified samples, the others the pixel-centre sample
        cameras OpenCV world-to-camera, pixel Ks with principal point (W/2, H/2); the ray of
                pixel (u, v) passes through (u + 0.5, v + 0.5)
        depths  [V, H, W] camera z-depth of the surface hit by the pixel-centre ray; finite and
                positive everywhere (the sky dome is geometry too)
        masks   [V, H, W] 1 where the pixel-centre ray hits a primitive (foreground), else 0
        points  [V * points_per_view, 3] back-projected from random depth pixels of each view,
                point_colors [P, 3] their pixel colours, point_views [P] the view each came from
                (so a context/target split keeps only the context views' points)
        near, far   0.9 x min depth, 1.05 x max depth
        name    f"synthetic-{seed}"
    synthetic_scenes(start_seed, count, config) -> iterator of scenes start_seed, start_seed + 1, ...

Seeds: training draws from [TRAIN_SEED_START, EVAL_SEED_START), held-out evaluation from
EVAL_SEED_START upward, so the two sets never share a scene. World frame: z up, ground z = 0.
A scene is a pure function of (seed, config): bit-identical on every call in one environment.
"""

from __future__ import annotations

from typing import Iterator

import torch

from foresplat.cameras import Cameras
from foresplat.data.scene import Scene
from foresplat.data.synthetic_config import BACKGROUND_KINDS, PRIMITIVE_KINDS, SyntheticConfig
from foresplat.data.synthetic_layout import SceneLayout, sample_layout
from foresplat.data.synthetic_render import camera_rays, pixel_rays, shade_chunked
from foresplat.data.synthetic_textures import TEXTURE_KINDS

TRAIN_SEED_START = 0
"""First training scene seed; training uses seeds in [TRAIN_SEED_START, EVAL_SEED_START)."""
EVAL_SEED_START = 1_000_000
"""First held-out evaluation scene seed; evaluation uses seeds >= EVAL_SEED_START."""

__all__ = ["SyntheticConfig", "generate_scene", "render_layout", "edge_pixels", "sample_layout",
           "synthetic_scenes", "SyntheticStream", "TRAIN_SEED_START", "EVAL_SEED_START", "PRIMITIVE_KINDS",
           "TEXTURE_KINDS", "BACKGROUND_KINDS"]


def edge_pixels(images: torch.Tensor, surface: torch.Tensor, threshold: float) -> torch.Tensor:
    """Pixels [V, H, W] (bool) worth supersampling: a 4-neighbour shows another surface id or a
    colour differing by more than `threshold` in some channel (images [V, H, W, 3], surface [V, H, W])."""
    edge = torch.zeros_like(surface, dtype=torch.bool)
    for dim in (1, 2):
        n = surface.shape[dim]
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[dim], b[dim] = slice(0, n - 1), slice(1, n)
        diff = (surface[tuple(a)] != surface[tuple(b)]) | \
               ((images[tuple(a)] - images[tuple(b)]).abs().amax(-1) > threshold)
        edge[tuple(a)] |= diff
        edge[tuple(b)] |= diff
    return edge


def _antialias(layout: SceneLayout, config: SyntheticConfig, images: torch.Tensor,
               surface: torch.Tensor) -> torch.Tensor:
    """Adaptive supersampling: edge pixels get the mean of supersample^2 stratified samples."""
    s = config.supersample
    edge = edge_pixels(images, surface, config.antialias_threshold)
    view, py, px = edge.nonzero(as_tuple=True)  # [M] each
    if view.numel() == 0:
        return images
    off = (torch.arange(s, dtype=torch.float32) + 0.5) / s  # [s]
    oy, ox = torch.meshgrid(off, off, indexing="ij")
    x = (px.float().unsqueeze(0) + ox.reshape(-1, 1)).reshape(-1)  # [s*s*M]
    y = (py.float().unsqueeze(0) + oy.reshape(-1, 1)).reshape(-1)
    o, d = pixel_rays(layout.viewmats, layout.Ks, view.repeat(s * s), x, y)
    sub = shade_chunked(layout, o, d, config.shadows, config.chunk_rays)
    out = images.clone()
    out[view, py, px] = sub.rgb.view(s * s, -1, 3).mean(0).clamp(0.0, 1.0)
    return out


def render_layout(layout: SceneLayout, config: SyntheticConfig, name: str | None = None,
                  point_seed: int | None = None) -> Scene:
    """Ray-traces `layout` into a Scene (see module docstring); `point_seed` seeds the point sampling."""
    V, H, W = layout.viewmats.shape[0], layout.height, layout.width
    o, d = camera_rays(layout.viewmats, layout.Ks, W, H)  # [V, H, W, 3] each
    centre = shade_chunked(layout, o.reshape(-1, 3), d.reshape(-1, 3), config.shadows, config.chunk_rays)
    depths = centre.t.view(V, H, W)
    masks = ((centre.surface >= 0) & (centre.surface < len(layout.objects))).float().view(V, H, W)
    images = centre.rgb.view(V, H, W, 3)
    if config.supersample > 1:
        images = _antialias(layout, config, images, centre.surface.view(V, H, W))
    points = colors = point_views = None
    if config.points_per_view > 0:
        g = torch.Generator().manual_seed(layout.seed if point_seed is None else int(point_seed))
        idx = torch.randint(0, H * W, (V, config.points_per_view), generator=g)  # [V, Pv]

        def pick(x: torch.Tensor) -> torch.Tensor:  # [V, H, W, C] -> [V, Pv, C] at idx
            flat = x.reshape(V, H * W, x.shape[-1])
            return torch.gather(flat, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

        t = pick(depths.unsqueeze(-1))  # [V, Pv, 1]
        points = (pick(o) + t * pick(d)).reshape(-1, 3)  # [P, 3]
        colors = pick(images).reshape(-1, 3)
        point_views = torch.arange(V).repeat_interleave(config.points_per_view)  # [P]
    near = 0.9 * float(depths.min())
    far = 1.05 * float(depths.max())
    cams = Cameras(layout.viewmats.clone(), layout.Ks.clone(), W, H)
    return Scene(images=images.contiguous(), cameras=cams, name=name or f"synthetic-{layout.seed}",
                 masks=masks, depths=depths.contiguous(), points=points, point_colors=colors,
                 point_views=point_views,
                 near=near, far=far)


def generate_scene(seed: int, config: SyntheticConfig | None = None) -> Scene:
    """Synthetic scene number `seed` (deterministic; see module docstring for the contents)."""
    config = (config or SyntheticConfig()).validate()
    layout = sample_layout(int(seed), config)
    return render_layout(layout, config, point_seed=int(seed) + 7919)


def synthetic_scenes(start_seed: int = TRAIN_SEED_START, count: int | None = None,
                     config: SyntheticConfig | None = None) -> Iterator[Scene]:
    """Scenes start_seed, start_seed + 1, ... (`count` of them; endless when None)."""
    config = (config or SyntheticConfig()).validate()
    k = 0
    while count is None or k < count:
        yield generate_scene(start_seed + k, config)
        k += 1


class SyntheticStream:
    """Indexable, iterable source of synthetic scenes: stream[i] = generate_scene(seed_offset + i).

    `length` bounds iteration and len() (None = endless iteration, len() raises TypeError).
    Use seed_offset=TRAIN_SEED_START for training and EVAL_SEED_START for held-out evaluation.
    """

    def __init__(self, config: SyntheticConfig | None = None, seed_offset: int = TRAIN_SEED_START,
                 length: int | None = None):
        self.config = (config or SyntheticConfig()).validate()
        self.seed_offset = int(seed_offset)
        self.length = length

    def __getitem__(self, index: int) -> Scene:
        if index < 0 or (self.length is not None and index >= self.length):
            raise IndexError(f"SyntheticStream: index {index} out of range (length {self.length})")
        return generate_scene(self.seed_offset + int(index), self.config)

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("SyntheticStream: endless stream has no length (pass length=...)")
        return self.length

    def __iter__(self) -> Iterator[Scene]:
        return synthetic_scenes(self.seed_offset, self.length, self.config)
