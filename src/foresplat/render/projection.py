"""EWA projection of 3D Gaussians into pinhole cameras (pure PyTorch, twice differentiable).

Conventions (as 3DGS / gsplat):
    means_c = R mean + t                       (OpenCV camera: x right, y down, z forward)
    Sigma   = R_q diag(s)^2 R_q^T,  Sigma_c = R Sigma R^T
    J       = [[fx/z, 0, -fx x'/z^2], [0, fy/z, -fy y'/z^2]]  where x'/z, y'/z are clamped to
              1.3x the field-of-view limits (Gaussians far outside the image get a sane footprint)
    cov2d   = J Sigma_c J^T + eps2d * I       (eps2d = 0.3 px^2 low-pass dilation)
    conic   = inverse(cov2d) as (a, b, c) with power = 0.5 (a dx^2 + c dy^2) + b dx dy
    mean2d  = (fx x/z + cx, fy y/z + cy)      (pixel centres at +0.5)
    radii   = ceil(3.33 * sqrt(diag(cov2d)))   per axis, as gsplat: outside this box every alpha is
              below 1/255 (opacity <= 1), so the image does not depend on tiling or bounding boxes.
A Gaussian is culled (radii = 0) when its depth is outside (near_plane, far_plane), its 2D
covariance is degenerate, or its box misses the image. Culled entries get finite placeholder
values, so they never put NaN into a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

RADIUS_SIGMAS = 3.33  # box half-size in standard deviations: exp(-3.33^2 / 2) ~= 1/255


@dataclass
class Projection:
    """Per-camera 2D Gaussians.

    means2d [C, N, 2] pixels, conics [C, N, 3] (a, b, c), depths [C, N] camera z,
    radii [C, N, 2] int32 box half-sizes in pixels (0 = culled), covars2d [C, N, 3] (xx, xy, yy)
    of the dilated 2D covariance.
    """

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    radii: torch.Tensor
    covars2d: torch.Tensor

    @property
    def visible(self) -> torch.Tensor:
        """[C, N] bool: not culled."""
        return (self.radii > 0).all(dim=-1)


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] from quaternions [..., 4] (w, x, y, z), normalized here."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def covariance_3d(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """World covariances [N, 3, 3] = (R_q S)(R_q S)^T from quats [N, 4] and scales [N, 3] (std devs)."""
    m = quat_to_rotmat(quats) * scales.unsqueeze(-2)  # [N, 3, 3], columns scaled
    return m @ m.transpose(-1, -2)


def world_to_camera(
    means: torch.Tensor, covars: torch.Tensor, viewmats: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-space means [C, N, 3] and covariances [C, N, 3, 3]; viewmats [C, 4, 4] world-to-camera."""
    R = viewmats[:, :3, :3]  # [C, 3, 3]
    t = viewmats[:, :3, 3]  # [C, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t.unsqueeze(1)
    covars_c = torch.einsum("cij,njk,clk->cnil", R, covars, R)
    return means_c, covars_c


def project_gaussians(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    *,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> Projection:
    """EWA-projects N Gaussians into C cameras (see module docstring).

    means [N, 3], quats [N, 4] (w, x, y, z; normalized here), scales [N, 3] (activated std devs),
    viewmats [C, 4, 4] OpenCV world-to-camera, Ks [C, 3, 3] pixel intrinsics.
    """
    means_c, cov_c = world_to_camera(means, covariance_3d(quats, scales), viewmats)
    tx, ty, tz = means_c.unbind(-1)  # [C, N]
    in_range = (tz.detach() > near_plane) & (tz.detach() < far_plane)
    z = torch.where(in_range, tz, torch.ones_like(tz))  # safe divisor for culled entries

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    u = torch.clamp(tx / z, min=-lim_x_neg, max=lim_x_pos)  # clamped x/z
    v = torch.clamp(ty / z, min=-lim_y_neg, max=lim_y_pos)

    # J = [[j00, 0, j02], [0, j11, j12]]
    j00, j02 = fx / z, -fx * u / z
    j11, j12 = fy / z, -fy * v / z
    s00, s01, s02 = cov_c[..., 0, 0], cov_c[..., 0, 1], cov_c[..., 0, 2]
    s11, s12, s22 = cov_c[..., 1, 1], cov_c[..., 1, 2], cov_c[..., 2, 2]
    a = j00 * j00 * s00 + 2 * j00 * j02 * s02 + j02 * j02 * s22 + eps2d
    b = j00 * j11 * s01 + j00 * j12 * s02 + j02 * j11 * s12 + j02 * j12 * s22
    c = j11 * j11 * s11 + 2 * j11 * j12 * s12 + j12 * j12 * s22 + eps2d
    det = a * c - b * b
    valid = in_range & (det.detach() > 0)
    det = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)  # [C, N, 3]
    means2d = torch.stack([fx * tx / z + cx, fy * ty / z + cy], dim=-1)  # [C, N, 2]

    with torch.no_grad():
        rx = torch.ceil(RADIUS_SIGMAS * torch.sqrt(a.clamp_min(0)))
        ry = torch.ceil(RADIUS_SIGMAS * torch.sqrt(c.clamp_min(0)))
        mx, my = means2d[..., 0], means2d[..., 1]
        inside = (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        keep = valid & inside
        radii = torch.stack([torch.where(keep, rx, 0.0), torch.where(keep, ry, 0.0)], dim=-1)
        radii = radii.to(torch.int32)
    return Projection(means2d, conics, tz, radii, torch.stack([a, b, c], dim=-1))
