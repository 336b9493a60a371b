"""Gaussians and cameras -> the arrays viser draws (numpy, no viser import).

viser's `add_gaussian_splats` takes ACTIVATED values: centres [N, 3], covariances [N, 3, 3]
(R diag(s^2) R^T), RGB [N, 3] in [0, 1] from the DC band (colour = C0 * dc + 0.5, clamped) and
opacities [N, 1]. Its camera poses are camera-to-world in the OpenCV convention (+z forward,
+y down), as foresplat's `Cameras.viewmats` are world-to-camera OpenCV matrices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from foresplat.cameras import Cameras
from foresplat.gaussians import Gaussians, sh_dc_to_rgb
from foresplat.models.geometry import matrix_to_quat  # noqa: F401 (re-exported for the viewer and tests)
from foresplat.render.projection import covariance_3d
from foresplat.render.projection import quat_to_rotmat as quat_to_matrix  # noqa: F401 (re-exported)


@dataclass
class SplatArrays:
    """What `viser.SceneApi.add_gaussian_splats` takes (float32 numpy)."""

    centers: np.ndarray       # [N, 3]
    covariances: np.ndarray   # [N, 3, 3]
    rgbs: np.ndarray          # [N, 3] in [0, 1]
    opacities: np.ndarray     # [N, 1] in (0, 1)


def splat_arrays(g: Gaussians) -> SplatArrays:
    """Unbatched Gaussians [N] -> activated numpy arrays for viser (view-independent DC colour)."""
    if g.batch_shape:
        raise ValueError(f"splat_arrays: expects unbatched Gaussians, got batch shape {list(g.batch_shape)}")
    g = g.detach().to(device="cpu", dtype=torch.float32)
    cov = covariance_3d(g.unit_quats(), g.scales())                     # R diag(s^2) R^T, [N, 3, 3]
    rgb = sh_dc_to_rgb(g.sh[:, 0, :]).clamp(0.0, 1.0)
    return SplatArrays(centers=g.means.numpy().copy(), covariances=cov.numpy().copy(),
                       rgbs=rgb.numpy().copy(), opacities=g.opacities()[:, None].numpy().copy())


@dataclass
class ViserPose:
    """A camera as viser takes it: camera-to-world rotation (w, x, y, z) and position, OpenCV axes."""

    wxyz: np.ndarray      # [4]
    position: np.ndarray  # [3]
    fov_y: float          # vertical field of view, radians
    aspect: float         # width / height


def viser_poses(cameras: Cameras) -> list[ViserPose]:
    """One ViserPose per camera of `cameras` (fov from fy and the image height)."""
    c2w = torch.linalg.inv(cameras.viewmats.detach().to("cpu", torch.float64))  # [C, 4, 4]
    quats = matrix_to_quat(c2w[:, :3, :3])
    fy = cameras.Ks[:, 1, 1].detach().to("cpu", torch.float64)
    return [ViserPose(wxyz=quats[i].numpy(), position=c2w[i, :3, 3].numpy(),
                      fov_y=2.0 * math.atan(0.5 * cameras.height / float(fy[i])),
                      aspect=cameras.width / cameras.height) for i in range(cameras.num)]


def pinhole_for_fov(viewmat: torch.Tensor, width: int, height: int, fov_y: float) -> Cameras:
    """The camera a browser frame of width x height with vertical fov `fov_y` (radians) shows:
    square pixels, principal point at the image centre, world-to-camera `viewmat` [4, 4]."""
    f = 0.5 * height / math.tan(0.5 * fov_y)
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float32)
    return Cameras(viewmat.detach().to(torch.float32)[None], K[None], int(width), int(height))
