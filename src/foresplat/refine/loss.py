"""Image losses and metrics of the refiner: SSIM (separable Gaussian window), L1 + SSIM, PSNR.

Images are channels-last [C, H, W, 3] (C views) with values in [0, 1] (data range 1).
SSIM follows pytorch-msssim: an 11-tap Gaussian window with sigma 1.5, "valid" filtering (no
padding), K = (0.01, 0.03), the mean of the SSIM map per channel then over channels. For images
smaller than the window, the window is shrunk to the largest odd size that fits (same sigma) where
pytorch-msssim would skip the smoothing along that axis.

Two implementations with equal values:
- autograd (default): plain tensor ops, differentiable any number of times w.r.t. both inputs
  (used inside an unrolled, differentiated refinement);
- fused (`fused=True`): a hand-derived backward w.r.t. pred only (once differentiable) that can
  reuse the blurred statistics of a fixed target (`SSIMTargetStats`): the refiner's fast path.
The separable filter runs as banded matrix products for small images (<= 96 px a side) and as 11
shifted multiply-adds otherwise (both faster than conv2d on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_CACHE: dict[tuple, torch.Tensor] = {}  # windows and band matrices, per size/dtype/device
_MATMUL_MAX_SIZE = 96  # up to this image side, filter by banded matmuls


def gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalized 1-D Gaussian [size] centred on the middle tap (cached per dtype/device)."""
    key = ("win", size, sigma, dtype, device)
    w = _CACHE.get(key)
    if w is None:
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        w = torch.exp(-(x * x) / (2 * sigma * sigma))
        w = (w / w.sum()).to(dtype=dtype, device=device)
        _CACHE[key] = w
    return w


def _band_matrix(n: int, win: torch.Tensor) -> torch.Tensor:
    """[n, n - s + 1] matrix M with M[j + k, j] = win[k]: x @ M is the valid 1-D filtering of x."""
    key = ("band", n, win.data_ptr(), win.numel(), win.dtype, win.device)  # windows live in _CACHE
    m = _CACHE.get(key)
    if m is None:
        s = win.numel()
        m = torch.zeros(n, n - s + 1, dtype=win.dtype, device=win.device)
        cols = torch.arange(n - s + 1, device=win.device)
        for k in range(s):
            m[cols + k, cols] = win[k]
        _CACHE[key] = m
    return m


def _shift_sum(x: torch.Tensor, w: list[float], dim: int) -> torch.Tensor:
    """Valid 1-D filtering of x along `dim` by shifted multiply-adds."""
    n = x.shape[dim] - len(w) + 1
    out = x.narrow(dim, 0, n) * w[0]
    for k in range(1, len(w)):
        out.add_(x.narrow(dim, k, n), alpha=w[k])
    return out


def _shift_sum_t(g: torch.Tensor, w: list[float], dim: int, size: int) -> torch.Tensor:
    """Adjoint of `_shift_sum` along `dim` (output length `size`), for the fused backward."""
    shape = list(g.shape)
    shape[dim] = size
    out = g.new_zeros(shape)
    n = g.shape[dim]
    for k in range(len(w)):
        out.narrow(dim, k, n).add_(g, alpha=w[k])
    return out


def _blur(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Valid separable blur of x [H, B, W] (rows first) with the 1-D window: [H - s + 1, B, W - s + 1]."""
    h, b, w = x.shape
    if max(h, w) <= _MATMUL_MAX_SIZE:
        x = x.reshape(h * b, w) @ _band_matrix(w, win)  # along W: [H*B, W']
        return (_band_matrix(h, win).transpose(0, 1) @ x.view(h, -1)).view(-1, b, x.shape[-1])  # along H
    wl = win.tolist()
    return _shift_sum(_shift_sum(x, wl, 2), wl, 0)


def _blur_t(g: torch.Tensor, win: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Adjoint of `_blur`: g [h', B, w'] -> [h, B, w] (the transposed, "full" filtering)."""
    _, b, w2 = g.shape
    if max(h, w) <= _MATMUL_MAX_SIZE:
        g = (_band_matrix(h, win) @ g.reshape(g.shape[0], -1)).view(h * b, w2)  # along H: [H*B, w']
        return (g @ _band_matrix(w, win).transpose(0, 1)).view(h, b, w)  # along W
    wl = win.tolist()
    return _shift_sum_t(_shift_sum_t(g, wl, 0, h), wl, 2, w)


def _window_for(h: int, w: int, window_size: int, sigma: float, dtype, device) -> torch.Tensor:
    size = min(window_size, h, w)
    size -= 1 - size % 2  # largest odd size that fits
    return gaussian_window(size, sigma, dtype, device)


def _rows_first(img: torch.Tensor) -> torch.Tensor:
    """[C, H, W, 3] -> [H, C*3, W] (the layout the filters work in: both passes are plain matmuls)."""
    c, h, w, ch = img.shape
    return img.permute(1, 0, 3, 2).reshape(h, c * ch, w)


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"ssim: expected pred and target of equal shape [C, H, W, ch], got "
                         f"{list(pred.shape)} and {list(target.shape)}")


@dataclass
class SSIMTargetStats:
    """Blurred statistics of fixed target images [C, H, W, 3], reused across steps by the fused SSIM."""

    y: torch.Tensor
    """Target, rows first [H, C*3, W]."""
    mu_y: torch.Tensor
    """Blurred target [h', C*3, w']."""
    eyy: torch.Tensor
    """Blurred squared target [h', C*3, w']."""
    win: torch.Tensor
    """The 1-D window used."""

    @staticmethod
    def of(target: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> "SSIMTargetStats":
        """Statistics of target [C, H, W, 3] (no grad)."""
        with torch.no_grad():
            _, h, w, _ = target.shape
            win = _window_for(h, w, window_size, sigma, target.dtype, target.device)
            y = _rows_first(target).contiguous()
            mu_y, eyy = _blur(torch.cat([y, y * y], 1), win).chunk(2, 1)
            return SSIMTargetStats(y, mu_y, eyy, win)

    @staticmethod
    def cat(items: list["SSIMTargetStats"]) -> "SSIMTargetStats":
        """Statistics of the views of several items, in order (same image size)."""
        return SSIMTargetStats(torch.cat([s.y for s in items], 1), torch.cat([s.mu_y for s in items], 1),
                               torch.cat([s.eyy for s in items], 1), items[0].win)


def _ssim_map(mu_x, mu_y, exx, eyy, exy, c1: float, c2: float):
    """SSIM map and its factors from blurred statistics: (a1, b1, a2, b2, map)."""
    mu_xy = mu_x * mu_y
    mu_sq = mu_x * mu_x + mu_y * mu_y
    a1, b1 = 2 * mu_xy + c1, mu_sq + c1
    a2, b2 = 2 * (exy - mu_xy) + c2, (exx + eyy - mu_sq) + c2
    return a1, b1, a2, b2, (a1 * a2) / (b1 * b2)


class _FusedSSIM(torch.autograd.Function):
    """Mean SSIM per image [B] of x [H, B, W] against fixed target statistics; hand-derived
    backward w.r.t. x only. Once differentiable (the unrolled mode uses the autograd path)."""

    @staticmethod
    def forward(ctx, x, y, mu_y, eyy, win, c1, c2):
        mu_x, exx, exy = _blur(torch.cat([x, x * x, x * y], 1), win).chunk(3, 1)  # [h', B, w'] each
        a1, b1, a2, b2, smap = _ssim_map(mu_x, mu_y, exx, eyy, exy, c1, c2)
        ctx.save_for_backward(x, y, mu_x, mu_y, a1, b1, a2, b2, smap, win)
        return smap.mean(dim=(0, 2))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, y, mu_x, mu_y, a1, b1, a2, b2, smap, win = ctx.saved_tensors
        h, _, w = x.shape
        t = smap * (grad / (smap.shape[0] * smap.shape[2])).view(1, -1, 1)  # dL/dS * S
        d_exy = 2 * t / a2  # dL/dE[xy]
        d_exx = -t / b2  # dL/dE[x^2]
        d_mux = 2 * t * (mu_y / a1 - mu_x / b1 - mu_y / a2 + mu_x / b2)  # dL/dmu_x (through sigmas too)
        b_mu, b_xx, b_xy = _blur_t(torch.cat([d_mux, d_exx, d_exy], 1), win, h, w).chunk(3, 1)
        return b_mu + 2 * x * b_xx + y * b_xy, None, None, None, None, None, None


def ssim(pred: torch.Tensor, target: torch.Tensor, *, window_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03, reduce: bool = True, fused: bool = False,
         target_stats: SSIMTargetStats | None = None) -> torch.Tensor:
    """SSIM of pred vs target [C, H, W, 3] in [0, 1]: a scalar (reduce) or per view [C].

    fused=True: hand-written backward (w.r.t. pred only, once differentiable); `target_stats`
    (`SSIMTargetStats.of(target)`, same window settings) skips re-blurring a fixed target.
    fused=False: plain autograd ops, differentiable any number of times w.r.t. both inputs.
    """
    _check_pair(pred, target)
    c, h, w, ch = pred.shape
    c1, c2 = k1 * k1, k2 * k2
    x = _rows_first(pred)
    if fused:
        st = target_stats if target_stats is not None else \
            SSIMTargetStats.of(target.to(pred.dtype), window_size, sigma)
        per_image = _FusedSSIM.apply(x, st.y, st.mu_y, st.eyy, st.win, c1, c2)  # [C*3]
    else:
        win = _window_for(h, w, window_size, sigma, pred.dtype, pred.device)
        y = _rows_first(target.to(pred.dtype))
        mu_x, mu_y, exx, eyy, exy = _blur(torch.cat([x, y, x * x, y * y, x * y], 1), win).chunk(5, 1)
        per_image = _ssim_map(mu_x, mu_y, exx, eyy, exy, c1, c2)[-1].mean(dim=(0, 2))  # [C*3]
    per_view = per_image.view(c, ch).mean(1)  # [C]
    return per_view.mean() if reduce else per_view


def photometric_loss(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.2, *,
                     fused: bool = False, target_stats: SSIMTargetStats | None = None) -> torch.Tensor:
    """(1 - w) * L1 + w * (1 - SSIM) of pred vs target [C, H, W, 3]; a scalar (mean over views).

    fused / target_stats: the fast once-differentiable SSIM (see `ssim`); keep fused=False when
    the loss must be differentiated twice (unrolled refinement) or w.r.t. the target.
    """
    l1 = (pred - target).abs().mean()
    if ssim_weight == 0:
        return l1
    s = ssim(pred, target, fused=fused, target_stats=target_stats)
    return (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - s)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per view [C] of pred vs target [C, H, W, 3] with data range 1 (pred clamped to [0, 1])."""
    mse = (pred.clamp(0, 1) - target).pow(2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse.clamp(min=1e-10))
