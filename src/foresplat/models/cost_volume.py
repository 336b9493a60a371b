"""Plane-sweep correlation volume between posed views (the MVSplat idea, small).

For every reference view i, its `num_sources` nearest other views j (by camera-centre distance)
are warped onto D fronto-parallel planes of view i at depths d_k (uniform in inverse depth in
[near, far]); the correlation <F_i(p), F_j(warp_k(p))> / sqrt(C), averaged over the sources that
see the point, forms the cost volume [B, V, D, h, w]. Sources are processed one at a time, so memory
is O(B V C D h w) whatever their number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from foresplat.models.geometry import pixel_grid


def inverse_depth_candidates(near: torch.Tensor, far: torch.Tensor, num: int) -> torch.Tensor:
    """[B] near, far -> [B, D] inverse depths from 1/near (k = 0) down to 1/far (k = D-1)."""
    t = torch.linspace(0.0, 1.0, num, device=near.device, dtype=near.dtype)  # [D]
    return (1.0 / near)[:, None] * (1 - t) + (1.0 / far)[:, None] * t


def nearest_sources(viewmats: torch.Tensor, num: int) -> torch.Tensor:
    """viewmats [B, V, 4, 4] -> indices [B, V, num] of the `num` nearest other cameras of every view."""
    R = viewmats[..., :3, :3]
    centers = -(R.transpose(-1, -2) @ viewmats[..., :3, 3:]).squeeze(-1)  # [B, V, 3]
    dist = torch.cdist(centers, centers)  # [B, V, V]
    eye = torch.eye(dist.shape[-1], dtype=torch.bool, device=dist.device)
    dist = dist.masked_fill(eye, float("inf"))
    # stable tie-break by view index: add a tiny index-proportional term
    dist = dist + torch.arange(dist.shape[-1], device=dist.device, dtype=dist.dtype) * 1e-9
    return dist.topk(num, dim=-1, largest=False).indices


def plane_sweep_correlation(features: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor,
                            inv_depths: torch.Tensor, num_sources: int) -> torch.Tensor:
    """Cost volume of correlations.

    features    [B, V, C, h, w]  per-view matching features
    viewmats    [B, V, 4, 4]     OpenCV world-to-camera
    Ks          [B, V, 3, 3]     intrinsics AT THE FEATURE RESOLUTION (pixel centres at +0.5)
    inv_depths  [B, D]           plane inverse depths of each scene
    returns     [B, V, D, h, w]  mean correlation over the sources that see the point (0 if none)
    """
    C = features.shape[2]
    return _plane_sweep(features, viewmats, Ks, inv_depths, num_sources,
                        lambda warped, ref: (warped * ref).sum(dim=1) / C**0.5, empty=0.0)


def plane_sweep_photometric(images: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor,
                            inv_depths: torch.Tensor, num_sources: int) -> torch.Tensor:
    """Photometric cost volume: mean absolute colour difference, no learned features.

    images      [B, V, 3, h, w]  colours in [0, 1] at the cost-volume resolution
    viewmats, Ks, inv_depths, num_sources as in plane_sweep_correlation
    returns     [B, V, D, h, w]  mean over the sources that see the point of mean_rgb |I_ref - I_src(warp)|
                                 (1 where no source sees the point: the largest possible cost)
    """
    return _plane_sweep(images, viewmats, Ks, inv_depths, num_sources,
                        lambda warped, ref: (warped - ref).abs().mean(dim=1), empty=1.0)


def _plane_sweep(features: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, inv_depths: torch.Tensor,
                 num_sources: int, compare, empty: float) -> torch.Tensor:
    """Shared sweep: compare(warped [BV, C, D, hw], ref [BV, C, 1, hw]) -> [BV, D, hw], averaged over
    the sources that see each point; `empty` where none does. Returns [B, V, D, h, w]."""
    B, V, Cf, h, w = features.shape
    D = inv_depths.shape[1]
    k = min(num_sources, V - 1)
    if k <= 0:
        return features.new_full((B, V, D, h, w), empty)
    dtype = features.dtype
    cams = viewmats.to(dtype)
    src = nearest_sources(cams.detach(), k)  # [B, V, k]
    c2w = torch.linalg.inv(cams)  # [B, V, 4, 4]
    K_inv = torch.linalg.inv(Ks.to(dtype))  # [B, V, 3, 3]
    pix = pixel_grid(h, w, features.device, dtype)  # [3, hw]
    depths = (1.0 / inv_depths).to(dtype)  # [B, D]
    ref = features.reshape(B * V, Cf, 1, h * w)  # [BV, C, 1, hw]
    bidx = torch.arange(B, device=features.device)[:, None]  # [B, 1]
    acc = features.new_zeros(B * V, D, h * w)
    cnt = features.new_zeros(B * V, D, h * w)
    for s in range(k):
        j = src[..., s]  # [B, V] source view of each reference view
        T = cams[bidx, j] @ c2w  # [B, V, 4, 4] reference camera -> source camera
        A = Ks.to(dtype)[bidx, j] @ T[..., :3, :3] @ K_inv  # [B, V, 3, 3]
        b = Ks.to(dtype)[bidx, j] @ T[..., :3, 3:]  # [B, V, 3, 1]
        Ap = A @ pix  # [B, V, 3, hw]
        proj = depths[:, None, :, None, None] * Ap[:, :, None] + b[:, :, None]  # [B, V, D, 3, hw]
        z = proj[..., 2, :]  # [B, V, D, hw]
        zc = z.clamp(min=1e-6)
        u, v = proj[..., 0, :] / zc, proj[..., 1, :] / zc  # source pixel coordinates
        gx, gy = 2 * u / w - 1, 2 * v / h - 1  # grid_sample, align_corners=False
        valid = (z > 1e-6) & (gx.abs() <= 1) & (gy.abs() <= 1)  # [B, V, D, hw]
        grid = torch.stack([gx, gy], dim=-1).clamp(-2, 2)  # [B, V, D, hw, 2]
        grid = torch.where(valid[..., None], grid, torch.full_like(grid, -2.0))
        src_feat = features[bidx, j].reshape(B * V, Cf, h, w)  # [BV, C, h, w]
        warped = F.grid_sample(src_feat, grid.reshape(B * V, D, h * w, 2), mode="bilinear",
                               padding_mode="zeros", align_corners=False)  # [BV, C, D, hw]
        m = valid.reshape(B * V, D, h * w).to(dtype)
        acc = acc + compare(warped, ref) * m
        cnt = cnt + m
    out = torch.where(cnt > 0, acc / cnt.clamp(min=1.0), torch.full_like(acc, empty))
    return out.reshape(B, V, D, h, w)
