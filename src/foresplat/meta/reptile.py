"""`reptile`: the Reptile direction G0 - G_K, the paper's dense first-order baseline.

One outer iteration, for G0 [N] attached to the head:
    K ~ U{k_min..k_max};  G_K = K plain refiner steps from G0.detach().clone() (no graph, no anchors)
    d = (G0 - G_K) / s        per parameter group (means, quats, log_scales, opacity, sh DC, sh rest)
    loss = lam * L(G0, zero_step_views) + (1 - lam) * <G0, stopgrad(d)>
Scaling s (RuleConfig.reptile_normalize):
  * True (default): s = sum_{t<K} lr_t, the group's learning rates summed over the K steps (the
    means lr decays). Then d is the lr-weighted mean of the refiner's update directions
    u_t = m_t / (sqrt(v_t) + eps); for a plain-SGD refiner it would be exactly the lr-weighted mean
    of the refiner's step gradients, i.e. a dense (every-step) first-order rule on the refiner's own
    loss. With Adam, d is a preconditioned, O(1)-per-element direction, not in loss-gradient units:
    the outer optimizer's learning rate (Adam is scale-invariant per parameter) absorbs the scale.
  * False: s = K (the mean displacement per step, in parameter units).
A group whose learning rate is 0 gets d = 0. With K = 0, d = 0 and the loss is lam * L(G0)
(the gradient reduces to lam times the vanilla gradient). Pruned Gaussians (prune_opacity_below)
get d = 0.
"""

from __future__ import annotations

import torch

from foresplat.data.scene import SceneSplit
from foresplat.gaussians import Gaussians
from foresplat.meta.base import RuleOutput
from foresplat.meta.config import RuleConfig
from foresplat.meta.inner import prune_mask, run_inner, scatter_kept
from foresplat.meta.metagrad import surrogate, zero_step_term
from foresplat.meta.schedule import sample_k
from foresplat.meta.vanilla import check_g0


def lr_sums(config: RuleConfig, k: int, extent: float, like: Gaussians) -> Gaussians:
    """Per-element sum of the refiner's learning rates over steps 0..k-1, broadcastable to `like`'s fields.

    Returns Gaussians of shapes means/quats/log_scales [1], opacity_logits [1], sh [K_sh, 1].
    """
    totals = {"means": 0.0, "quats": 0.0, "log_scales": 0.0, "opacity_logits": 0.0, "sh_dc": 0.0, "sh_rest": 0.0}
    for step in range(k):
        lrs = config.refine.lrs(step, extent)
        for name in totals:
            totals[name] += getattr(lrs, name)
    opts = {"dtype": like.dtype, "device": like.device}
    sh = torch.full((like.sh.shape[-2], 1), totals["sh_rest"], **opts)  # [K_sh, 1]
    sh[0, 0] = totals["sh_dc"]
    return Gaussians(torch.tensor([totals["means"]], **opts), torch.tensor([totals["quats"]], **opts),
                     torch.tensor([totals["log_scales"]], **opts),
                     torch.tensor([totals["opacity_logits"]], **opts), sh)


def _safe_div(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """x / s with 0 where s == 0 (a frozen group)."""
    return torch.where(s > 0, x / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(x))


class ReptileRule:
    """The Reptile rule (see module docstring)."""

    def __init__(self, config: RuleConfig):
        self.config = config

    def __call__(self, g0: Gaussians, split: SceneSplit, generator: torch.Generator) -> RuleOutput:
        """G0 [N] (attached to the head) -> RuleOutput(lam L(G0) + (1 - lam) <G0, sg(d)>, logs)."""
        check_g0(g0)
        cfg = self.config
        k = sample_k(cfg, generator)
        keep = prune_mask(g0, cfg.refine)
        g_start = g0.detach().clone()  # [N] no graph
        if keep is not None:
            g_start = g_start.select(keep)  # [M]
        res = run_inner(g_start, split, cfg, cfg.refine, k, [], generator, lambda *a: None)
        g_first = g0.detach() if keep is None else g0.detach().select(keep)  # [M]
        if k == 0:
            step_dir = g_first.map(torch.zeros_like)
        elif cfg.reptile_normalize:
            sums = lr_sums(cfg, k, res.extent, g_first)
            step_dir = Gaussians.from_tensors([_safe_div(a - b, s) for a, b, s in
                                               zip(g_first.tensors(), res.g_last.tensors(), sums.tensors())])
        else:
            step_dir = Gaussians.from_tensors([(a - b) / k for a, b in zip(g_first.tensors(), res.g_last.tensors())])
        direction = scatter_kept(step_dir, keep, g0)
        zero, zero_logs = zero_step_term(g0, split, cfg)
        loss = (1.0 - cfg.lam) * surrogate(g0, direction)
        if zero is not None:
            loss = loss + zero
        logs = {"K": float(k), "num_anchors": 0.0,
                "direction_norm": float(torch.sqrt(sum((t * t).sum() for t in direction.tensors()))),
                **zero_logs, "time_inner": res.time_inner, "time_anchor": 0.0}
        return RuleOutput(loss, logs)
