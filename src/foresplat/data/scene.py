"""`Scene`: posed images of one scene, and its split into context (input) and target (held-out) views.

    images        [V, H, W, 3] float32 in [0, 1]
    cameras       Cameras with V cameras of size W x H (OpenCV, see foresplat.cameras)
    masks         [V, H, W] float32 in [0, 1] (1 = foreground) or None
    depths        [V, H, W] float32 camera z-depth (OpenCV), 0 where unknown, or None
    points        [P, 3] float32 sparse world points, or None
    point_colors  [P, 3] float32 in [0, 1], or None
    point_views   [P] long: the view each point was observed from, or None (unknown: e.g. SfM points
                  triangulated from all views). `subset` keeps only the points of the kept views, so
                  a context/target split never hands target-view geometry to the context set.
    near, far     positive scene depth bounds (float)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from foresplat._checks import check_tensor
from foresplat.cameras import Cameras


@dataclass
class Scene:
    """Posed images of one scene (see module docstring for shapes)."""

    images: torch.Tensor
    cameras: Cameras
    name: str = "scene"
    masks: torch.Tensor | None = None
    depths: torch.Tensor | None = None
    points: torch.Tensor | None = None
    point_colors: torch.Tensor | None = None
    point_views: torch.Tensor | None = None
    near: float = 0.1
    far: float = 100.0

    @property
    def num_views(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def validate(self) -> "Scene":
        """Checks shapes and value ranges; raises ValueError naming the scene and field."""
        n = self.name
        check_tensor(f"{n}.images", self.images, (None, None, None, 3), min_dims=4)
        if self.images.dim() != 4:
            raise ValueError(f"{n}.images: expected [V, H, W, 3], got {list(self.images.shape)}")
        self.cameras.validate(f"{n}.cameras")
        if self.cameras.num != self.num_views:
            raise ValueError(f"{n}: {self.num_views} images but {self.cameras.num} cameras")
        if (self.cameras.width, self.cameras.height) != (self.width, self.height):
            raise ValueError(f"{n}: images are {self.width}x{self.height} but cameras say "
                             f"{self.cameras.width}x{self.cameras.height}")
        for field in ("masks", "depths"):
            t = getattr(self, field)
            if t is not None and tuple(t.shape) != tuple(self.images.shape[:3]):
                raise ValueError(f"{n}.{field}: expected {list(self.images.shape[:3])}, got {list(t.shape)}")
        if self.points is not None:
            check_tensor(f"{n}.points", self.points, (None, 3))
            if self.point_colors is not None and self.point_colors.shape != self.points.shape:
                raise ValueError(f"{n}.point_colors: expected {list(self.points.shape)}, "
                                 f"got {list(self.point_colors.shape)}")
            pv = self.point_views
            if pv is not None and (pv.shape != self.points.shape[:1] or pv.dtype != torch.long
                                   or (pv.numel() and not (0 <= int(pv.min()) and int(pv.max()) < self.num_views))):
                raise ValueError(f"{n}.point_views: expected [P={self.points.shape[0]}] long view "
                                 f"indices in [0, {self.num_views}), got {list(pv.shape)} {pv.dtype}")
        if not (0 < self.near < self.far):
            raise ValueError(f"{n}: need 0 < near < far, got near={self.near}, far={self.far}")
        return self

    def subset(self, indices: Sequence[int] | torch.Tensor) -> "Scene":
        """The scene restricted to views `indices` (bounds kept; points kept, or, when
        `point_views` is known, only the points of those views, renumbered)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        points, colors, views = self.points, self.point_colors, self.point_views
        if views is not None and points is not None:
            new_index = torch.full((self.num_views,), -1, dtype=torch.long)
            new_index[idx] = torch.arange(len(idx))
            keep = new_index[views] >= 0  # [P]
            points, views = points[keep], new_index[views[keep]]
            colors = None if colors is None else colors[keep]
        return replace(self, images=self.images[idx], cameras=self.cameras.index(idx),
                       masks=pick(self.masks), depths=pick(self.depths), points=points,
                       point_colors=colors, point_views=views)

    def resized(self, width: int, height: int) -> "Scene":
        """All views resized to width x height (area filter when shrinking); intrinsics follow."""
        if (width, height) == (self.width, self.height):
            return self
        mode = "area" if width <= self.width and height <= self.height else "bilinear"

        def rs(t: torch.Tensor | None, nearest: bool = False) -> torch.Tensor | None:
            if t is None:
                return None
            x = t.unsqueeze(-1) if t.dim() == 3 else t  # [V, H, W, C]
            x = x.permute(0, 3, 1, 2)
            x = F.interpolate(x, size=(height, width), mode="nearest" if nearest else mode,
                              **({} if nearest or mode == "area" else {"align_corners": False}))
            x = x.permute(0, 2, 3, 1)
            return x[..., 0] if t.dim() == 3 else x

        return replace(self, images=rs(self.images).clamp(0, 1), masks=rs(self.masks),
                       depths=rs(self.depths, nearest=True),
                       cameras=self.cameras.rescaled(width, height))

    def center_cropped(self, width: int, height: int) -> "Scene":
        """The central width x height crop of every view; principal points follow."""
        if width > self.width or height > self.height:
            raise ValueError(f"{self.name}: crop {width}x{height} larger than images {self.width}x{self.height}")
        left, top = (self.width - width) // 2, (self.height - height) // 2
        crop = lambda t: None if t is None else t[:, top:top + height, left:left + width]  # noqa: E731
        return replace(self, images=crop(self.images), masks=crop(self.masks), depths=crop(self.depths),
                       cameras=self.cameras.cropped(left, top, width, height))

    def extent(self) -> float:
        """3DGS scene extent: 1.1 x the largest distance of a camera centre from their mean."""
        c = self.cameras.centers().double()
        return float(1.1 * (c - c.mean(0)).norm(dim=-1).max().clamp(min=1e-6))

    def to(self, *args, **kwargs) -> "Scene":
        """The scene with every float tensor moved/cast by `Tensor.to(*args, **kwargs)`; point_views
        (long indices) only follow the device."""
        mv = lambda t: None if t is None else t.to(*args, **kwargs)  # noqa: E731
        images = mv(self.images)
        views = None if self.point_views is None else self.point_views.to(images.device)
        return replace(self, images=images, cameras=self.cameras.to(*args, **kwargs),
                       masks=mv(self.masks), depths=mv(self.depths), points=mv(self.points),
                       point_colors=mv(self.point_colors), point_views=views)


@dataclass
class SceneSplit:
    """Context views (predicted from, refined on) and held-out target views of one scene."""

    context: Scene
    target: Scene
    context_indices: list[int]
    target_indices: list[int]


SplitRule = Literal["random", "even", "first"]


def split_views(
    scene: Scene,
    num_context: int = 12,
    num_target: int = 4,
    rule: SplitRule = "random",
    seed: int = 0,
) -> SceneSplit:
    """Picks num_context + num_target distinct views and splits them, deterministically per seed.

    rule "random": a seeded random subset, targets a seeded random subset of it;
    rule "even": views evenly spaced over the sequence, every (k)-th of them a target
        (the LLFF habit: held-out views interleaved with the inputs);
    rule "first": the first num_context views are context, the next num_target are targets.
    """
    total = num_context + num_target
    if num_context < 1 or num_target < 0:
        raise ValueError(f"split_views: need num_context >= 1 and num_target >= 0, got {num_context}, {num_target}")
    if total > scene.num_views:
        raise ValueError(f"split_views: scene {scene.name!r} has {scene.num_views} views, "
                         f"{num_context} context + {num_target} target requested")
    g = torch.Generator().manual_seed(int(seed))
    if rule == "random":
        chosen = torch.randperm(scene.num_views, generator=g)[:total].tolist()
        tgt_pos = set(torch.randperm(total, generator=g)[:num_target].tolist())
        target = sorted(chosen[i] for i in tgt_pos)
        context = sorted(chosen[i] for i in range(total) if i not in tgt_pos)
    elif rule == "even":
        chosen = torch.linspace(0, scene.num_views - 1, total).round().long().tolist()
        if num_target:
            tpos = torch.linspace(0, total - 1, num_target + 2)[1:-1].round().long().tolist()
        else:
            tpos = []
        target = [chosen[i] for i in tpos]
        context = [c for i, c in enumerate(chosen) if i not in set(tpos)]
    elif rule == "first":
        context = list(range(num_context))
        target = list(range(num_context, total))
    else:
        raise ValueError(f"split_views: unknown rule {rule!r} (expected random, even or first)")
    return SceneSplit(scene.subset(context), scene.subset(target), context, target)
