"""Image-quality metrics on rendered target views: PSNR, SSIM and (optional) LPIPS.

Conventions: images are [C, H, W, 3] (or [H, W, 3]) float tensors in [0, 1], channels last, as
`render` returns them and `Scene.images` stores them. Predictions are clamped to [0, 1] before
scoring. Every metric returns one value per view [C]; averaging over views (and scenes) is the
caller's job, so the mean of per-view PSNRs is reported (the 3DGS habit), not the PSNR of the mean MSE.

LPIPS lives in `foresplat.evaluate.lpips` (it needs weights that are not shipped).
"""

from __future__ import annotations

import torch
from pytorch_msssim import ssim as _msssim_ssim

from foresplat._checks import check_tensor

MAX_PSNR = 100.0  # PSNR reported for a perfect match (MSE clamped to 1e-10)


def _as_views(name: str, x: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] or [C, H, W, 3] -> [C, H, W, 3], validated (finite, floating, 3 channels)."""
    check_tensor(name, x, (None, None, 3), min_dims=3)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"{name}: expected [H, W, 3] or [C, H, W, 3], got {list(x.shape)}")
    return x


def _pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pred = _as_views("pred", pred)
    target = _as_views("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {list(pred.shape)} and target {list(target.shape)} differ in shape")
    return pred.detach().float().clamp(0.0, 1.0), target.detach().float().clamp(0.0, 1.0)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per view [C] in dB (data range 1): -10 log10(mean squared error)."""
    p, t = _pair(pred, target)
    mse = ((p - t) ** 2).mean(dim=(1, 2, 3)).clamp(min=10.0 ** (-MAX_PSNR / 10.0))  # [C]
    return -10.0 * torch.log10(mse)


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per view [C] (Gaussian window 11, sigma 1.5, K = (0.01, 0.03), data range 1).

    The standard Wang et al. (2004) SSIM as pytorch-msssim computes it (valid convolution, mean over
    the SSIM map and the three channels). Images smaller than the window get a smaller odd window.
    """
    p, t = _pair(pred, target)
    side = min(p.shape[1], p.shape[2])
    win = min(window, side if side % 2 == 1 else side - 1)
    if win < 1:
        raise ValueError(f"ssim: images of size {p.shape[2]}x{p.shape[1]} are too small")
    x = p.permute(0, 3, 1, 2)  # [C, 3, H, W]
    y = t.permute(0, 3, 1, 2)
    return _msssim_ssim(x, y, data_range=1.0, size_average=False, win_size=win, win_sigma=sigma)
