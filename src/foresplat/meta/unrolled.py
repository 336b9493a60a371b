"""`unrolled`: the exact meta-gradient, by differentiating through K steps of the functional Adam.

One outer iteration, for G0 [N] attached to the head:
    K ~ U{k_min..k_max} (refused if K > unrolled_max_k)
    G_0 = G0 (attached);  G_{k+1} = AdamStep(G_k, dL_refiner(G_k)/dG_k)   differentiable refiner
    loss = lam * L(G0, zero_step_views) + (1 - lam) * mean_{k in anchors} L(G_k, V_k)
with the same anchors and the same generator draws (K, refiner views, anchor views V_k) as
`metagrad`: metagrad's g_bar is exactly this loss's gradient with every refiner Jacobian
dG_{k+1}/dG_k replaced by the identity. With anchor_first=False, anchor_last=True and
stride >= K the refinement term is L(G_K), the ForeSplat objective itself.

Numerics (documented choices):
  * the renders use the `reference` backend (pure PyTorch, twice differentiable), whatever
    RuleConfig.backend / RefineConfig.backend say;
  * the run is in float64 when `unrolled_float64` (G0 and the views are cast; the loss is cast
    back to G0's dtype, so the head's graph is unchanged);
  * Adam's update m / (sqrt(v) + eps) with the 3DGS eps = 1e-15 is close to sign(g) at the first
    step, whose derivative eps / (|g| + eps)^2 explodes for tiny nonzero gradients; the refiner
    already gives sqrt(v) a zero derivative at v == 0 (exactly-zero gradients). `unrolled_eps`
    (default 1e-8, torch's Adam default) replaces the refiner's eps for this rule only, bounding
    that derivative; set it to None to differentiate the refiner with its own eps.
Memory and time grow linearly in K (the whole graph is kept): small scenes, K <= unrolled_max_k.
`peak_bytes` estimates a call at K = k_max; the training loop refuses a batch above the memory
limit (foresplat.limits) before running it.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from foresplat.data.scene import Scene, SceneSplit
from foresplat.gaussians import Gaussians
from foresplat.meta.base import RuleOutput
from foresplat.meta.config import RuleConfig
from foresplat.meta.inner import prune_mask, run_inner
from foresplat.meta.loss import render_loss
from foresplat.meta.metagrad import zero_step_term
from foresplat.meta.schedule import anchor_steps, sample_k
from foresplat.meta.vanilla import check_g0


class UnrolledRule:
    """The exact (unrolled) meta-gradient rule (see module docstring)."""

    def __init__(self, config: RuleConfig):
        if config.k_max > config.unrolled_max_k:
            raise ValueError(f"unrolled: k_max={config.k_max} exceeds unrolled_max_k={config.unrolled_max_k}; "
                             "the unrolled graph grows linearly in K (use small K on small scenes, or "
                             "raise RuleConfig.unrolled_max_k knowingly)")
        self.config = replace(config, backend="reference")
        self.refine = replace(config.refine, backend="reference",
                              eps=config.refine.eps if config.unrolled_eps is None else config.unrolled_eps)

    def peak_bytes(self, g0: Gaussians, split: SceneSplit) -> float:
        """Estimated memory of one call on G0 [N] and `split` at the largest K (limits.unrolled_bytes)."""
        from foresplat.limits import unrolled_bytes

        cfg = self.config
        k = cfg.k_max
        pool = {"context": split.context.num_views, "target": split.target.num_views,
                "both": split.context.num_views + split.target.num_views}[cfg.anchor_views]
        per_anchor = min(cfg.anchor_views_per_anchor or pool, pool)  # None: the whole anchor pool
        anchors = len(anchor_steps(k, cfg.stride, cfg.anchor_first, cfg.anchor_last))
        renders = k * cfg.refine.views_per_step + anchors * per_anchor  # the float64 renders the graph keeps
        height, width = split.context.images.shape[-3:-1]
        return unrolled_bytes(renders, g0.num, int(height) * int(width))

    def __call__(self, g0: Gaussians, split: SceneSplit, generator: torch.Generator) -> RuleOutput:
        """G0 [N] (attached to the head) -> RuleOutput(lam L(G0) + (1 - lam) mean_k L(G_k), logs)."""
        check_g0(g0)
        cfg = self.config
        k = sample_k(cfg, generator)
        if k > cfg.unrolled_max_k:
            raise ValueError(f"unrolled: K={k} exceeds unrolled_max_k={cfg.unrolled_max_k}")
        anchors = anchor_steps(k, cfg.stride, cfg.anchor_first, cfg.anchor_last)
        if not anchors:
            raise ValueError(f"unrolled: K={k} with stride {cfg.stride} has no anchor")
        dtype = torch.float64 if cfg.unrolled_float64 else g0.dtype
        g_run = g0.map(lambda t: t.to(dtype))  # [N] attached to the head's graph
        keep = prune_mask(g0, cfg.refine)
        if keep is not None:
            g_run = g_run.select(keep)  # [M] still attached
        anchor_terms: list[torch.Tensor] = []

        def on_anchor(step: int, g_k: Gaussians, views: Scene) -> None:
            anchor_terms.append(render_loss(g_k, views, cfg))  # attached through the unrolled refiner

        res = run_inner(g_run, split, cfg, self.refine, k, anchors, generator, on_anchor,
                        differentiable=True)
        loss = (1.0 - cfg.lam) * torch.stack(anchor_terms).mean().to(g0.dtype)
        zero, zero_logs = zero_step_term(g0, split, cfg)
        if zero is not None:
            loss = loss + zero
        anchor_vals = [float(a.detach()) for a in anchor_terms]
        logs = {"K": float(k), "num_anchors": float(len(anchors)),
                "anchor_loss_mean": sum(anchor_vals) / len(anchor_vals),
                "anchor_loss_first": anchor_vals[0], "anchor_loss_last": anchor_vals[-1],
                **zero_logs, "time_inner": res.time_inner,
                "time_anchor": res.time_anchor}
        return RuleOutput(loss, logs)
