"""Refiner configuration and the per-group learning-rate schedule (3DGS defaults).

The refiner optimizes six parameter groups of a `Gaussians` set with Adam:
    means           lr_means x scene extent, exponential (log-linear) decay to lr_means_final_ratio x
                    that over `steps` updates, as 3DGS's get_expon_lr_func
    log_scales      lr_log_scales (constant)
    quats           lr_quats (constant)
    opacity_logits  lr_opacity (constant)
    sh[..., 0, :]   lr_sh_dc (constant)           the DC band of the `sh` tensor
    sh[..., 1:, :]  lr_sh_rest (constant)         the higher bands of the same tensor
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class AdamLRs:
    """Learning rates of the six parameter groups for one Adam update (absolute values)."""

    means: float
    """lr of the means (already multiplied by the scene extent and scheduled)."""
    quats: float
    """lr of the (unnormalized) quaternions."""
    log_scales: float
    """lr of the log-scales."""
    opacity_logits: float
    """lr of the opacity logits."""
    sh_dc: float
    """lr of the DC SH band, sh[..., 0, :]."""
    sh_rest: float
    """lr of the higher SH bands, sh[..., 1:, :]."""

    def sh_lr_tensor(self, k: int, like: torch.Tensor) -> torch.Tensor:
        """Per-coefficient lr [k, 1] for an sh tensor [..., N, k, 3] (DC row, then the rest)."""
        lr = torch.full((k, 1), self.sh_rest, dtype=like.dtype, device=like.device)
        lr[0, 0] = self.sh_dc
        return lr


def expon_lr(step: int, lr_init: float, lr_final: float, max_steps: int,
             delay_steps: int = 0, delay_mult: float = 1.0) -> float:
    """Log-linear interpolation from lr_init (step 0) to lr_final (step >= max_steps), as 3DGS.

    With delay_steps > 0 the rate is further scaled by delay_mult + (1 - delay_mult) *
    sin(pi/2 * min(step / delay_steps, 1)) (a smooth warm-up), as 3DGS's get_expon_lr_func.
    Returns 0 for step < 0 or when both rates are 0.
    """
    if step < 0 or (lr_init == 0.0 and lr_final == 0.0):
        return 0.0
    if lr_init <= 0.0 or lr_final <= 0.0:
        raise ValueError(f"expon_lr: needs positive rates for log interpolation, got {lr_init}, {lr_final}")
    if delay_steps > 0:
        delay = delay_mult + (1.0 - delay_mult) * math.sin(0.5 * math.pi * min(step / delay_steps, 1.0))
    else:
        delay = 1.0
    t = min(max(step / max(max_steps, 1), 0.0), 1.0)
    return delay * math.exp(math.log(lr_init) * (1.0 - t) + math.log(lr_final) * t)


MAX_LR = 10.0
"""Largest learning rate RefineConfig accepts (each group): far above any useful value (3DGS: 1.6e-4
to 5e-2), low enough that a typo such as 1e30 is refused instead of producing 1e30 means."""


@dataclass
class RefineConfig:
    """Settings of the Adam refiner R_K (the same at training and at test time)."""

    steps: int = 1000
    """Number of Adam updates K (also the horizon of the means lr decay)."""
    lr_means: float = 1.6e-4
    """Initial lr of the means, multiplied by the scene extent."""
    lr_means_final_ratio: float = 0.01
    """Final means lr as a fraction of the initial one (3DGS: 1.6e-6 / 1.6e-4)."""
    lr_means_delay_steps: int = 0
    """3DGS lr warm-up length for the means (0 = none, the 3DGS default)."""
    lr_means_delay_mult: float = 0.01
    """3DGS warm-up multiplier at step 0 (used only when lr_means_delay_steps > 0)."""
    lr_log_scales: float = 5e-3
    """lr of the log-scales."""
    lr_quats: float = 1e-3
    """lr of the quaternions."""
    lr_opacity: float = 5e-2
    """lr of the opacity logits."""
    lr_sh_dc: float = 2.5e-3
    """lr of the DC SH band."""
    lr_sh_rest: float = 2.5e-3 / 20
    """lr of the higher SH bands."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam (beta1, beta2)."""
    eps: float = 1e-15
    """Adam epsilon (3DGS uses 1e-15)."""
    views_per_step: int = 1
    """Context views rendered per step (distinct, drawn at random; the loss is their mean)."""
    ssim_weight: float = 0.2
    """Loss = (1 - w) L1 + w (1 - SSIM)."""
    seed: int = 0
    """Seed of the view-sampling generator (refinement is deterministic per seed)."""
    prune_opacity_below: float = 0.0
    """Before refining, drop Gaussians with opacity below this (0 = keep all; 3DGS uses 0.005)."""
    background: tuple[float, float, float] | None = None
    """Background colour of the renders (None = the renderer's default, black)."""
    backend: Literal["auto", "reference", "cpu", "gsplat"] = "auto"
    """Rasterizer backend (see foresplat.render)."""

    def validate(self) -> "RefineConfig":
        """Checks value ranges; raises ValueError naming the field."""
        if self.steps < 0:
            raise ValueError(f"RefineConfig.steps: must be >= 0, got {self.steps}")
        for name in ("lr_means", "lr_log_scales", "lr_quats", "lr_opacity", "lr_sh_dc", "lr_sh_rest"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= MAX_LR):
                raise ValueError(f"RefineConfig.{name} (--{name.replace('_', '-')}): must be a finite value in "
                                 f"[0, {MAX_LR:g}] (3DGS uses 1e-4..5e-2), got {v}")
        if not (0 < self.lr_means_final_ratio <= 1e3):
            raise ValueError(f"RefineConfig.lr_means_final_ratio: must be in (0, 1000], got {self.lr_means_final_ratio}")
        if self.lr_means_delay_steps < 0 or not (0 < self.lr_means_delay_mult <= 1):
            raise ValueError(f"RefineConfig.lr_means_delay_steps/_mult: need steps >= 0 and mult in (0, 1], got "
                             f"{self.lr_means_delay_steps}, {self.lr_means_delay_mult}")
        b1, b2 = self.betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"RefineConfig.betas: each must be in [0, 1), got {self.betas}")
        if not (0 < self.eps <= 1):
            raise ValueError(f"RefineConfig.eps: must be in (0, 1], got {self.eps}")
        if self.views_per_step < 1:
            raise ValueError(f"RefineConfig.views_per_step: must be >= 1, got {self.views_per_step}")
        if not (0 <= self.ssim_weight <= 1):
            raise ValueError(f"RefineConfig.ssim_weight: must be in [0, 1], got {self.ssim_weight}")
        if not (0 <= self.prune_opacity_below < 1):
            raise ValueError(f"RefineConfig.prune_opacity_below: must be in [0, 1), got {self.prune_opacity_below}")
        if self.background is not None and (len(self.background) != 3
                                            or not all(0 <= c <= 1 for c in self.background)):
            raise ValueError(f"RefineConfig.background: expected 3 values (RGB) in [0, 1], got {self.background}")
        return self

    def lrs(self, step: int, extent: float, total_steps: int | None = None) -> AdamLRs:
        """Learning rates of update `step` (0-based) of a run of `total_steps` (default self.steps).

        The means lr follows 3DGS: update k uses get_expon_lr_func(...)(k + 1), i.e. 3DGS's
        iteration k + 1, so the last update of the run uses exactly the final rate.
        """
        total = self.steps if total_steps is None else int(total_steps)
        lr0 = self.lr_means * float(extent)
        lr_means = expon_lr(step + 1, lr0, lr0 * self.lr_means_final_ratio, total,
                            self.lr_means_delay_steps, self.lr_means_delay_mult)
        return AdamLRs(means=lr_means, quats=self.lr_quats, log_scales=self.lr_log_scales,
                       opacity_logits=self.lr_opacity, sh_dc=self.lr_sh_dc, sh_rest=self.lr_sh_rest)
