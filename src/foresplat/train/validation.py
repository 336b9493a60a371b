"""Held-out quality of the zero-step prediction G0: render the target views, compare to the images."""

from __future__ import annotations

import torch

from foresplat.data.scene import SceneSplit
from foresplat.models import Predictor
from foresplat.train.data import collate


@torch.no_grad()
def heldout_metrics(model: Predictor, splits: list[SceneSplit], backend: str = "auto") -> dict[str, float]:
    """Mean target-view MSE and PSNR (dB, renders clamped to [0, 1]) of G0 over `splits`.

    Predicts each scene from its context views, one scene at a time; returns {"val_mse", "val_psnr"}.
    """
    from foresplat.render import render

    if not splits:
        raise ValueError("heldout_metrics: no validation scenes")
    dev = next(model.parameters()).device
    mses, psnrs = [], []
    for split in splits:
        g = model(*collate([split]).to(dev).args())[0]  # Gaussians [N]
        cams = split.target.cameras.to(dev)
        pred = render(g, cams, backend=backend).colors.clamp(0, 1)  # [T, H, W, 3]
        mse = (pred - split.target.images.to(dev)).pow(2).flatten(1).mean(1)  # [T]
        mses.append(float(mse.mean()))
        psnrs.append(float((-10 * torch.log10(mse.clamp(min=1e-10))).mean()))
    return {"val_mse": sum(mses) / len(mses), "val_psnr": sum(psnrs) / len(psnrs)}
