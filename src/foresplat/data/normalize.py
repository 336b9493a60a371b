"""Scene normalisation: a similarity transform that makes predictions independent of the capture's units.

A model works in a normalised frame fixed per scene from its cameras and bounds:

    x' = s (x - c)        c = mean camera centre, s = 1 / sqrt(near * far)

so the geometric mean of the depth bounds becomes 1 and the cameras sit around the origin.
Cameras keep their rotations and intrinsics; a world-to-camera [R | t] becomes [R | s (R c + t)]
(camera-space coordinates are scaled by s too, so depths, near and far scale by s).
`SceneNormalization.apply(scene)` maps a Scene into the frame; `.to_world(gaussians)` maps Gaussians
predicted there back to the user's world frame (means x = x' / s + c, log-scales - log s;
rotations, opacities and colours are unchanged because the transform has no rotation).

No rotation is part of the transform: the predictors compute everything in camera frames from
relative poses, so a rotated world frame gives rotated Gaussians without help (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from foresplat.data.scene import Scene, SceneSplit
from foresplat.gaussians import Gaussians


@dataclass(frozen=True)
class SceneNormalization:
    """x' = scale * (x - center): center [3] (world units), scale > 0 (1 / world unit)."""

    center: tuple[float, float, float]
    scale: float

    @staticmethod
    def of(scene: Scene) -> "SceneNormalization":
        """The normalisation of `scene`: mean camera centre, 1 / sqrt(near * far)."""
        if not (0 < scene.near < scene.far) or not math.isfinite(scene.far):
            raise ValueError(f"{scene.name}: need finite bounds 0 < near < far to normalise, "
                             f"got near={scene.near}, far={scene.far}")
        centers = scene.cameras.centers().detach().double().cpu()  # [V, 3]
        c = centers.mean(dim=0)
        if not bool(torch.isfinite(c).all()):
            raise ValueError(f"{scene.name}.cameras: non-finite camera centres")
        return SceneNormalization((float(c[0]), float(c[1]), float(c[2])), 1.0 / math.sqrt(scene.near * scene.far))

    def _center(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.center, dtype=like.dtype, device=like.device)

    def apply(self, scene: Scene) -> Scene:
        """The scene in the normalised frame (viewmats, points, depths, near/far; images unchanged)."""
        vm = scene.cameras.viewmats.double()  # [V, 4, 4]
        R, t = vm[:, :3, :3], vm[:, :3, 3]
        c = self._center(vm)
        vm2 = vm.clone()
        vm2[:, :3, 3] = self.scale * (t + R @ c)  # [V, 3]
        cams = replace(scene.cameras, viewmats=vm2.to(scene.cameras.viewmats.dtype))
        pts = None if scene.points is None else (self.scale * (scene.points.double() - c)).to(scene.points.dtype)
        depths = None if scene.depths is None else scene.depths * self.scale
        return replace(scene, cameras=cams, points=pts, depths=depths,
                       near=scene.near * self.scale, far=scene.far * self.scale)

    def to_world(self, g: Gaussians) -> Gaussians:
        """Gaussians [..., N] from the normalised frame back to the world frame."""
        means = g.means / self.scale + self._center(g.means)
        return replace(g, means=means, log_scales=g.log_scales - math.log(self.scale))

    def from_world(self, g: Gaussians) -> Gaussians:
        """Gaussians [..., N] from the world frame into the normalised frame (inverse of to_world)."""
        means = (g.means - self._center(g.means)) * self.scale
        return replace(g, means=means, log_scales=g.log_scales + math.log(self.scale))


def normalize_split(split: SceneSplit) -> SceneSplit:
    """Context and target views in the normalised frame of the context views (what a predictor sees)."""
    norm = SceneNormalization.of(split.context)
    return replace(split, context=norm.apply(split.context), target=norm.apply(split.target))
