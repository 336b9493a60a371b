"""ONNX-friendly replacements for the few PyTorch ops the predictor uses that ONNX lacks.

    inverse(M [..., n, n]), n in (3, 4)        closed-form inverse (adjugate / 3x3 block + Schur complement)
    pairwise_distance(x [..., P, C], y [..., R, C]) -> [..., P, R]   Euclidean, like torch.cdist
    area_resize(x [N, C, H, W], size)          F.interpolate(mode="area") for integer down-scaling factors

`onnx_compatible_ops()` swaps them in for `torch.linalg.inv`, `torch.cdist` and area
interpolation while a graph is traced for export (process-wide, restored on exit), so the model
code itself stays unchanged. Each replacement equals the original to float32 rounding on the
inputs the predictor gives it (invertible camera matrices, exact down-scaling); tests check this.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F


def _inverse3(m: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] -> inverse via the adjugate (no pivoting; fine for camera intrinsics/rotations)."""
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    g, h, i = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    A, B, C = e * i - f * h, -(d * i - f * g), d * h - e * g  # cofactors of the first row
    det = a * A + b * B + c * C
    adj = torch.stack([
        torch.stack([A, -(b * i - c * h), b * f - c * e], -1),
        torch.stack([B, a * i - c * g, -(a * f - c * d)], -1),
        torch.stack([C, -(a * h - b * g), a * e - b * d], -1),
    ], -2)  # [..., 3, 3]
    return adj / det[..., None, None]


def _inverse4(m: torch.Tensor) -> torch.Tensor:
    """[..., 4, 4] -> inverse by blocks [[A, b], [c, d]] with A 3x3 invertible (true for camera poses)."""
    A, b = m[..., :3, :3], m[..., :3, 3:]  # [..., 3, 3], [..., 3, 1]
    c, d = m[..., 3:, :3], m[..., 3:, 3:]  # [..., 1, 3], [..., 1, 1]
    Ai = _inverse3(A)
    Aib = Ai @ b  # [..., 3, 1]
    cAi = c @ Ai  # [..., 1, 3]
    s_inv = 1.0 / (d - c @ Aib)  # [..., 1, 1] inverse Schur complement
    top = torch.cat([Ai + Aib @ (s_inv * cAi), -Aib * s_inv], -1)  # [..., 3, 4]
    bottom = torch.cat([-s_inv * cAi, s_inv], -1)  # [..., 1, 4]
    return torch.cat([top, bottom], -2)


def inverse(m: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of [..., 3, 3] or [..., 4, 4] matrices; ValueError for other sizes."""
    if m.shape[-2:] == (3, 3):
        return _inverse3(m)
    if m.shape[-2:] == (4, 4):
        return _inverse4(m)
    raise ValueError(f"inverse: expected [..., 3, 3] or [..., 4, 4] matrices, got {list(m.shape)}")


def pairwise_distance(x: torch.Tensor, y: torch.Tensor, p: float = 2.0, *args, **kwargs) -> torch.Tensor:
    """x [..., P, C], y [..., R, C] -> Euclidean distances [..., P, R] (torch.cdist with p = 2)."""
    if p != 2.0:
        raise ValueError(f"pairwise_distance: only p=2 is exported to ONNX, got p={p}")
    diff = x[..., :, None, :] - y[..., None, :, :]  # [..., P, R, C]
    return torch.sqrt((diff * diff).sum(-1))


def area_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """x [N, C, H, W] -> [N, C, h, w] by averaging kH x kW blocks (H = kH h, W = kW w)."""
    H, W = x.shape[-2:]
    h, w = size
    k = (int(H // h), int(W // w))  # a constant of the graph: the size ratio is fixed by the model
    return F.avg_pool2d(x, kernel_size=k, stride=k)


@contextlib.contextmanager
def onnx_compatible_ops() -> Iterator[None]:
    """Within the block, torch.linalg.inv / torch.cdist / F.interpolate(mode="area") use the
    replacements above (process-wide; restored on exit, also on error)."""
    orig_inv, orig_cdist, orig_interp = torch.linalg.inv, torch.cdist, F.interpolate

    def interpolate(x, size=None, scale_factor=None, mode="nearest", *args, **kwargs):
        if mode == "area" and size is not None:
            return area_resize(x, tuple(size))
        return orig_interp(x, size, scale_factor, mode, *args, **kwargs)

    torch.linalg.inv, torch.cdist, F.interpolate = inverse, pairwise_distance, interpolate
    try:
        yield
    finally:
        torch.linalg.inv, torch.cdist, F.interpolate = orig_inv, orig_cdist, orig_interp
