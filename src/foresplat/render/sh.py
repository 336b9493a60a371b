"""Real spherical harmonics, degrees 0-3, with the constants and sign conventions of 3DGS / gsplat.

    colour = max(sum_k Y_k(dir) * coeffs[k] + 0.5, 0),   dir = normalize(mean - camera centre)

Everything here is pure PyTorch without in-place ops on graph tensors, so it is twice differentiable.
"""

from __future__ import annotations

import torch

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
         0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def num_sh_bases(degree: int) -> int:
    """K = (degree + 1)^2 coefficients for an SH degree in 0..3."""
    if degree not in (0, 1, 2, 3):
        raise ValueError(f"sh_degree: expected 0, 1, 2 or 3, got {degree}")
    return (degree + 1) ** 2


def eval_sh_bases(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """SH basis values [..., (degree+1)^2] at UNIT directions `dirs` [..., 3] (3DGS order and signs)."""
    k = num_sh_bases(degree)
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if k > 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if k > 4:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        out += [SH_C2[0] * xy, SH_C2[1] * yz, SH_C2[2] * (2.0 * zz - xx - yy), SH_C2[3] * xz,
                SH_C2[4] * (xx - yy)]
    if k > 9:
        out += [SH_C3[0] * y * (3.0 * xx - yy), SH_C3[1] * xy * z, SH_C3[2] * y * (4.0 * zz - xx - yy),
                SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy), SH_C3[4] * x * (4.0 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3.0 * yy)]
    return torch.stack(out, dim=-1)


def spherical_harmonics(degree: int, dirs: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Raw SH value [..., 3] (before +0.5 and clamping).

    dirs [..., 3] (any length, normalized here), coeffs [..., K, 3] with K >= (degree+1)^2; only the
    first (degree+1)^2 coefficients are used.
    """
    k = num_sh_bases(degree)
    if coeffs.shape[-2] < k:
        raise ValueError(f"colors: SH degree {degree} needs {k} coefficients, got {coeffs.shape[-2]}")
    unit = torch.nn.functional.normalize(dirs, dim=-1)
    bases = eval_sh_bases(degree, unit)  # [..., k]
    return (bases.unsqueeze(-1) * coeffs[..., :k, :]).sum(dim=-2)


def sh_to_colors(
    degree: int, means: torch.Tensor, coeffs: torch.Tensor, camera_centers: torch.Tensor
) -> torch.Tensor:
    """View-dependent colours [C, N, 3] = clamp_min(SH(mean - centre) + 0.5, 0).

    means [N, 3], coeffs [N, K, 3], camera_centers [C, 3] (world coordinates).
    """
    dirs = means.unsqueeze(0) - camera_centers.unsqueeze(1)  # [C, N, 3]
    if degree == 0:  # direction-independent: skip the normalization entirely
        raw = (SH_C0 * coeffs[:, 0, :]).unsqueeze(0).expand(camera_centers.shape[0], -1, -1)
    else:
        raw = spherical_harmonics(degree, dirs, coeffs.unsqueeze(0).expand(dirs.shape[0], -1, -1, -1))
    return torch.clamp_min(raw + 0.5, 0.0)
