"""The rule loss L: the SAME loss for the zero-step term L(G0) and every anchor term L(G_k).

    L(G, views) = mse_weight * MSE(render(G, views), images) + ssim_weight * (1 - SSIM(...))
MSE is the mean over all pixels, channels and views; SSIM the mean over views, computed by the
refiner's twice-differentiable `foresplat.refine.loss.ssim` (Gaussian window 11, sigma 1.5,
K = (0.01, 0.03), data range 1, valid filtering as pytorch-msssim; images smaller than the
window get the largest odd window that fits). Renders are NOT clamped, so the gradient also
reaches colours outside [0, 1]. Renders use the refiner's background (RefineConfig.background).

This is the outer (training) loss. The refiner's own step loss (0.8 L1 + 0.2 (1 - SSIM) on one
random context view, foresplat.refine.photometric_loss) is a different quantity and is not used here.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from foresplat.cameras import Cameras
from foresplat.data.scene import Scene, SceneSplit
from foresplat.gaussians import Gaussians
from foresplat.meta.config import RuleConfig, ViewSet
from foresplat.refine.loss import ssim


def image_loss(pred: torch.Tensor, target: torch.Tensor, mse_weight: float, ssim_weight: float) -> torch.Tensor:
    """mse_weight * MSE + ssim_weight * (1 - SSIM) of pred vs target [C, H, W, 3] -> scalar (differentiable in pred)."""
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[-1] != 3:
        raise ValueError(f"image_loss: expected pred and target [C, H, W, 3] of equal shape, "
                         f"got {list(pred.shape)} and {list(target.shape)}")
    target = target.to(pred.dtype)
    loss = pred.new_zeros(())
    if mse_weight:
        loss = loss + mse_weight * ((pred - target) ** 2).mean()
    if ssim_weight:
        loss = loss + ssim_weight * (1.0 - ssim(pred, target))
    return loss


def view_set(split: SceneSplit, which: ViewSet) -> Scene:
    """The views named by `which`: the split's context, target, or both (context first, then target)."""
    if which == "context":
        return split.context
    if which == "target":
        if split.target.num_views == 0:
            raise ValueError("rule loss: the split has no target views but the rule asks for 'target' "
                             "views (set RuleConfig.anchor_views / zero_step_views to 'context')")
        return split.target
    if which == "both":
        c, t = split.context, split.target
        if t.num_views == 0:
            return c
        cams = Cameras(torch.cat([c.cameras.viewmats, t.cameras.viewmats]),
                       torch.cat([c.cameras.Ks, t.cameras.Ks]), c.cameras.width, c.cameras.height)
        return replace(c, images=torch.cat([c.images, t.images]), cameras=cams, masks=None, depths=None)
    raise ValueError(f"rule loss: unknown view set {which!r} (expected context, target or both)")


def render_loss(g: Gaussians, views: Scene, config: RuleConfig, backend: str | None = None) -> torch.Tensor:
    """L(g, views): renders the unbatched `g` in every camera of `views` and returns the scalar rule loss.

    The cameras and images are cast to g's dtype and device (a float64 g on a float32 scene works).
    """
    from foresplat.render import render  # the renderer package may load optional backends

    bg = config.refine.background
    backgrounds = None if bg is None else torch.tensor(bg, dtype=g.dtype, device=g.device)  # [3]
    cams = Cameras(views.cameras.viewmats.to(g.means), views.cameras.Ks.to(g.means),  # g's dtype/device
                   views.cameras.width, views.cameras.height)
    out = render(g, cams, backgrounds=backgrounds, backend=backend or config.backend)
    target = views.images.to(out.colors)  # [C, H, W, 3]
    return image_loss(out.colors, target, config.mse_weight, config.ssim_weight)
