"""`metagrad` (and `dense` = metagrad with stride 1): first-order meta-gradients at anchor states.

One outer iteration, for G0 [N] attached to the head:
    K ~ U{k_min..k_max};  G = G0.detach().clone();  run K plain refiner steps on G (no graph)
    at each anchor k (multiples of stride, plus 0 / K per anchor_first / anchor_last):
        g_k = dL(G_k, V_k)/dG_k on a detached copy of G_k     V_k = anchor views drawn for k
    g_bar = mean_k g_k                                         (equal weights, per field)
    loss  = lam * L(G0, zero_step_views) + (1 - lam) * <G0, stopgrad(g_bar)>
    <G0, g_bar> = sum over the five fields of (g0_field * g_bar_field).sum()
so d loss / d G0 = lam * dL(G0)/dG0 + (1 - lam) * g_bar.

The anchor loss L is the rule loss (meta/loss.py) on `anchor_views` (one random view per anchor
by default), NOT the refiner's step loss (0.8 L1 + 0.2 (1-SSIM) on one random context view): the
refiner's gradient at step k is a different quantity (another loss, context views only), so it is
not reused; the extra cost is one forward+backward render of the anchor views per anchor.
g_bar is exactly the gradient of mean_k L(G_k) with the refiner's Jacobians replaced by the
identity (dG_{k+1}/dG_k = I): the first-order approximation of the `unrolled` rule with the same
generator draws. With the refiner pruning (prune_opacity_below > 0), pruned Gaussians get g = 0.
"""

from __future__ import annotations

import time

import torch

from foresplat.data.scene import Scene, SceneSplit
from foresplat.gaussians import Gaussians
from foresplat.meta.base import RuleOutput
from foresplat.meta.config import RuleConfig
from foresplat.meta.inner import prune_mask, run_inner, scatter_kept
from foresplat.meta.loss import render_loss, view_set
from foresplat.meta.schedule import anchor_steps, sample_k
from foresplat.meta.vanilla import check_g0


def surrogate(g0: Gaussians, direction: Gaussians) -> torch.Tensor:
    """<G0, stopgrad(direction)> = sum over fields of (g0_f * direction_f).sum(): its gradient w.r.t. G0 is `direction`."""
    terms = [(t * d.detach().to(t.dtype)).sum() for t, d in zip(g0.tensors(), direction.tensors())]
    return torch.stack(terms).sum()


def zero_step_term(g0: Gaussians, split: SceneSplit, config: RuleConfig
                   ) -> tuple[torch.Tensor | None, dict[str, float]]:
    """(lam * L(G0) attached, or None when lam == 0; logs {"zero_step_loss", "time_zero_step"}).

    With lam == 0, L(G0) is still evaluated for the logs without a graph (one forward render of
    zero_step_views) when config.log_zero_step; otherwise "zero_step_loss" is absent from the logs.
    """
    t0 = time.perf_counter()
    views = view_set(split, config.zero_step_views)
    if config.lam > 0:
        loss0 = render_loss(g0, views, config)
        return config.lam * loss0, {"zero_step_loss": float(loss0.detach()),
                                    "time_zero_step": time.perf_counter() - t0}
    if not config.log_zero_step:
        return None, {"time_zero_step": 0.0}
    with torch.no_grad():
        loss0 = render_loss(g0.detach(), views, config)
    return None, {"zero_step_loss": float(loss0), "time_zero_step": time.perf_counter() - t0}


class MetaGradRule:
    """The MetaGrad rule (see module docstring); `dense=True` forces stride 1 (the paper's dense-anchor ablation)."""

    def __init__(self, config: RuleConfig, dense: bool = False):
        self.config = config
        self.stride = 1 if dense else config.stride

    def __call__(self, g0: Gaussians, split: SceneSplit, generator: torch.Generator) -> RuleOutput:
        """G0 [N] (attached to the head) -> RuleOutput(lam L(G0) + (1 - lam) <G0, sg(g_bar)>, logs)."""
        check_g0(g0)
        cfg = self.config
        k = sample_k(cfg, generator)
        anchors = anchor_steps(k, self.stride, cfg.anchor_first, cfg.anchor_last)
        if not anchors:
            raise ValueError(f"metagrad: K={k} with stride {self.stride} and anchor_first/anchor_last "
                             "off has no anchor (RuleConfig: raise k_min or turn an end anchor on)")
        keep = prune_mask(g0, cfg.refine)
        g_start = g0.detach().clone()  # [N] no graph; a copy, so the refiner can never write into G0
        if keep is not None:
            g_start = g_start.select(keep)  # [M]
        g_sum = [torch.zeros_like(t) for t in g_start.tensors()]
        anchor_losses: list[float] = []

        def on_anchor(step: int, g_k: Gaussians, views: Scene) -> None:
            leaf = g_k.detach().clone().requires_grad_(True)  # a detached copy of G_k
            loss_k = render_loss(leaf, views, cfg)
            grads = torch.autograd.grad(loss_k, leaf.tensors())
            for acc, gr in zip(g_sum, grads):
                acc.add_(gr)
            anchor_losses.append(float(loss_k.detach()))

        res = run_inner(g_start, split, cfg, cfg.refine, k, anchors, generator, on_anchor)
        g_bar = scatter_kept(Gaussians.from_tensors([s / len(anchors) for s in g_sum]), keep, g0)
        zero, zero_logs = zero_step_term(g0, split, cfg)
        loss = (1.0 - cfg.lam) * surrogate(g0, g_bar)
        if zero is not None:
            loss = loss + zero
        logs = {"K": float(k), "num_anchors": float(len(anchors)),
                "anchor_loss_mean": sum(anchor_losses) / len(anchor_losses),
                "anchor_loss_first": anchor_losses[0], "anchor_loss_last": anchor_losses[-1],
                "anchor_grad_norm": float(torch.sqrt(sum((t * t).sum() for t in g_bar.tensors()))),
                **zero_logs, "time_inner": res.time_inner, "time_anchor": res.time_anchor}
        return RuleOutput(loss, logs)

