"""Camera geometry used by the predictor (OpenCV cameras, pixel centres at +0.5).

    scale_intrinsics(Ks [...,3,3], sx, sy)     intrinsics of the same views resized by (sx, sy)
    pixel_grid(h, w)                          homogeneous pixel centres [3, h*w] (u + 0.5, v + 0.5, 1)
    matrix_to_quat(R [...,3,3])               rotation matrix -> unit quaternion (w, x, y, z), w >= 0
    quat_multiply(a, b)                       Hamilton product, both (w, x, y, z)
"""

from __future__ import annotations

import torch


def scale_intrinsics(Ks: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Ks [..., 3, 3] for images resized by sx (width) and sy (height); pixel centres stay at +0.5."""
    out = Ks.clone()
    out[..., 0, :] = out[..., 0, :] * sx
    out[..., 1, :] = out[..., 1, :] * sy
    return out


def pixel_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Homogeneous pixel centres [3, h*w] in row-major order: (x + 0.5, y + 0.5, 1)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype) + 0.5,
                            torch.arange(w, device=device, dtype=dtype) + 0.5, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones_like(xs).reshape(-1)])


def matrix_to_quat(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] -> unit quaternions [..., 4] (w, x, y, z) with w >= 0.

    Uses the numerically stable branch (largest of w, x, y, z) for every matrix.
    """
    r = lambda i, j: R[..., i, j]  # noqa: E731
    t = r(0, 0) + r(1, 1) + r(2, 2)
    # Four candidate (unnormalised) quaternions; candidate i is accurate when component i is large,
    # and its own component i (the diagonal below) is 4 x that component squared.
    cands = torch.stack([
        torch.stack([1 + t, r(2, 1) - r(1, 2), r(0, 2) - r(2, 0), r(1, 0) - r(0, 1)], -1),
        torch.stack([r(2, 1) - r(1, 2), 1 + r(0, 0) - r(1, 1) - r(2, 2), r(0, 1) + r(1, 0), r(0, 2) + r(2, 0)], -1),
        torch.stack([r(0, 2) - r(2, 0), r(0, 1) + r(1, 0), 1 - r(0, 0) + r(1, 1) - r(2, 2), r(1, 2) + r(2, 1)], -1),
        torch.stack([r(1, 0) - r(0, 1), r(0, 2) + r(2, 0), r(1, 2) + r(2, 1), 1 - r(0, 0) - r(1, 1) + r(2, 2)], -1),
    ], dim=-2)  # [..., 4 candidates, 4]
    diag = torch.diagonal(cands, dim1=-2, dim2=-1)  # [..., 4]
    best = diag.argmax(dim=-1, keepdim=True)  # [..., 1]
    q = torch.gather(cands, -2, best.unsqueeze(-1).expand(*best.shape, 4)).squeeze(-2)
    q = torch.nn.functional.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of quaternions [..., 4] (w, x, y, z); rotation b first, then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], dim=-1)
