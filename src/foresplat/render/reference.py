"""Dense pure-PyTorch rasterizer: the readable specification every other backend is tested against.

For each camera the visible Gaussians are sorted by depth (stable, ties by index) and EVERY pixel
is composited against EVERY visible Gaussian (pixels x Gaussians, chunked over rows):

    power_i = 0.5 (a dx^2 + c dy^2) + b dx dy,   (dx, dy) = pixel centre - mean2d
    alpha_i = min(0.99, opacity_i exp(-power_i)); skipped (alpha 0) if alpha_i < 1/255 or power_i < 0
    T_i     = prod_{j<i} (1 - alpha_j)
    Gaussian i is composited only while T_i (1 - alpha_i) >= 1e-4; the first one that would take T
    below 1e-4 is dropped and ends the pixel (3DGS rule)
    w_i = alpha_i T_i,  colour = sum w_i c_i + T_final bg,  alpha = 1 - T_final,
    depth = sum w_i z_i / alpha (0 where alpha = 0)
No in-place ops on graph tensors and no branches on graph values: it is twice differentiable
(the early-stop mask is a detached boolean, as in the forward rule).
Memory and time are O(pixels x Gaussians): use it for tests and small scenes only.
"""

from __future__ import annotations

import torch

from foresplat.render.constants import ALPHA_MAX, ALPHA_MIN, T_MIN

_CHUNK_ELEMENTS = 1 << 22  # pixel x Gaussian pairs per chunk


def _composite_rows(
    pix: torch.Tensor,  # [P, 2] pixel centres
    means2d: torch.Tensor,  # [M, 2] sorted front to back
    conics: torch.Tensor,  # [M, 3]
    opacities: torch.Tensor,  # [M]
    colors: torch.Tensor,  # [M, 3]
    depths: torch.Tensor,  # [M]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composites P pixels; returns sum w c [P, 3], T_final [P], sum w z [P]."""
    d = pix.unsqueeze(1) - means2d.unsqueeze(0)  # [P, M, 2]
    dx, dy = d[..., 0], d[..., 1]
    power = 0.5 * (conics[:, 0] * dx * dx + conics[:, 2] * dy * dy) + conics[:, 1] * dx * dy  # [P, M]
    alpha = torch.clamp_max(opacities * torch.exp(-power), ALPHA_MAX)  # [P, M]
    used = (power.detach() >= 0) & (alpha.detach() >= ALPHA_MIN)
    alpha = torch.where(used, alpha, torch.zeros_like(alpha))
    log_keep = torch.log1p(-alpha)  # log(1 - alpha), >= log(0.01)
    with torch.no_grad():  # early stop: keep i only while T_{i+1} >= T_MIN (monotone in i)
        alive = torch.exp(torch.cumsum(log_keep, dim=1)) >= T_MIN
    alpha = torch.where(alive, alpha, torch.zeros_like(alpha))
    log_keep = torch.log1p(-alpha)
    log_t = torch.cumsum(log_keep, dim=1)  # log T after each Gaussian
    t_before = torch.exp(log_t - log_keep)  # [P, M]
    w = alpha * t_before  # [P, M]
    return w @ colors, torch.exp(log_t[:, -1]), w @ depths


def rasterize_reference(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    colors: torch.Tensor,
    opacities: torch.Tensor,
    depths: torch.Tensor,
    radii: torch.Tensor,
    width: int,
    height: int,
    backgrounds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dense compositing of projected Gaussians (module docstring).

    means2d [C, N, 2], conics [C, N, 3], colors [C, N, 3], opacities [N] (activated), depths [C, N],
    radii [C, N, 2] (0 = culled), backgrounds [C, 3] or None.
    Returns colours [C, H, W, 3], alphas [C, H, W, 1], expected depths [C, H, W, 1].
    """
    C = means2d.shape[0]
    dtype, device = means2d.dtype, means2d.device
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    pix = torch.stack([xs, ys], dim=-1).reshape(-1, 2) + 0.5  # [H*W, 2]
    out_c, out_a, out_d = [], [], []
    for cam in range(C):
        idx = torch.nonzero((radii[cam] > 0).all(dim=-1)).squeeze(1)  # visible Gaussians
        order = torch.argsort(depths[cam, idx].detach(), stable=True)
        idx = idx[order]
        m2, con, z = means2d[cam, idx], conics[cam, idx], depths[cam, idx]
        op, col = opacities[idx], colors[cam, idx]
        rows = max(1, _CHUNK_ELEMENTS // max(1, width * max(1, idx.numel())))
        parts = [_composite_rows(pix[y0 * width:(y0 + rows) * width], m2, con, op, col, z)
                 for y0 in range(0, height, rows)] if idx.numel() > 0 else []
        if parts:
            rgb = torch.cat([p[0] for p in parts])  # [H*W, 3]
            t_final = torch.cat([p[1] for p in parts])  # [H*W]
            wz = torch.cat([p[2] for p in parts])  # [H*W]
        else:
            # nothing visible: zero images, still connected to every input (zero gradients)
            zero = sum(0.0 * t.sum() for t in (means2d, conics, colors, opacities, depths))
            rgb = pix.new_zeros(height * width, 3) + zero
            t_final = pix.new_ones(height * width)
            wz = pix.new_zeros(height * width)
        alpha = 1.0 - t_final
        if backgrounds is not None:
            rgb = rgb + t_final.unsqueeze(-1) * backgrounds[cam]
        depth = torch.where(alpha > 0, wz / alpha.clamp_min(1e-10), torch.zeros_like(wz))
        out_c.append(rgb.reshape(height, width, 3))
        out_a.append(alpha.reshape(height, width, 1))
        out_d.append(depth.reshape(height, width, 1))
    return torch.stack(out_c), torch.stack(out_a), torch.stack(out_d)
