"""The inner loop shared by the refining rules: K refiner steps with a callback at every anchor.

`run_inner` drives a `foresplat.refine.Refiner` over the split's context views (the refiner's
input views) and calls `on_anchor(k, g_k, views_k)` at each anchor step, drawing the anchor's
views first (see schedule.py for the order of the generator draws). Plain mode keeps no graph;
differentiable mode keeps the whole unrolled graph (the unrolled rule).

The refiner's learning-rate horizon is `RefineConfig.steps` (the means lr decays over the test-time
run length): the K inner steps are the first K steps of the test-time refiner, not a compressed
run whose lr decays within K.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from foresplat.data.scene import Scene, SceneSplit
from foresplat.gaussians import Gaussians
from foresplat.meta.config import RuleConfig
from foresplat.meta.loss import view_set
from foresplat.meta.schedule import pick_views
from foresplat.refine.config import RefineConfig


@dataclass
class InnerResult:
    """The end of an inner run: G_K, the anchor steps visited and the time spent in each part (s)."""

    g_last: Gaussians
    anchors: list[int]
    time_inner: float
    """Seconds in refiner steps."""
    time_anchor: float
    """Seconds in `on_anchor` callbacks (anchor losses / gradients)."""
    extent: float
    """The scene extent the refiner scaled its means lr by."""


def prune_mask(g0: Gaussians, refine: RefineConfig) -> torch.Tensor | None:
    """Bool mask [N] of the Gaussians the refiner keeps (opacity >= prune_opacity_below), or None if it prunes none."""
    if refine.prune_opacity_below <= 0:
        return None
    keep = g0.opacities().detach() >= refine.prune_opacity_below  # [N]
    return None if bool(keep.all()) else keep


def scatter_kept(values: Gaussians, keep: torch.Tensor | None, like: Gaussians) -> Gaussians:
    """`values` on the kept subset [M] -> a full set shaped like `like` [N], zeros at pruned Gaussians."""
    if keep is None:
        return values
    out = []
    for v, t in zip(values.tensors(), like.tensors()):
        full = torch.zeros_like(t.detach())
        full[keep] = v.detach()
        out.append(full)
    return Gaussians.from_tensors(out)


def run_inner(
    g_start: Gaussians,
    split: SceneSplit,
    config: RuleConfig,
    refine: RefineConfig,
    k: int,
    anchors: list[int],
    generator: torch.Generator,
    on_anchor: Callable[[int, Gaussians, Scene], None],
    differentiable: bool = False,
) -> InnerResult:
    """Runs K = `k` refiner steps from `g_start` on split.context, calling on_anchor at `anchors`.

    g_start: unbatched Gaussians [N]; in plain mode it must be a private copy outside any graph
        (the caller passes G0.detach().clone()): the refiner updates it IN PLACE; in
        differentiable mode it may be attached to the head's graph, and every g_k stays attached.
    anchors: sorted steps in 0..k; at each, `pick_views(anchor views, anchor_views_per_anchor)` is
        drawn from `generator` and on_anchor(step, g_step, views) is called before the step's update.
    """
    from foresplat.refine import Refiner  # the steppable refiner (foresplat.refine)

    anchor_pool = view_set(split, config.anchor_views) if anchors else None
    refiner = Refiner(refine, split.context)  # extent: the refiner's default, the context views'
    state = refiner.init_state(g_start)
    g = g_start if differentiable else g_start.requires_grad_(True)  # plain: leaves updated in place
    todo = set(anchors)
    t_inner = t_anchor = 0.0
    for step in range(k + 1):
        if step in todo:
            t0 = time.perf_counter()
            views = pick_views(anchor_pool, config.anchor_views_per_anchor, generator)
            on_anchor(step, g, views)
            t_anchor += time.perf_counter() - t0
        if step < k:
            t0 = time.perf_counter()
            g, state, _ = refiner.step(g, state, step, generator, differentiable=differentiable,
                                       inplace=not differentiable)
            t_inner += time.perf_counter() - t0
    return InnerResult(g.detach() if not differentiable else g, sorted(todo), t_inner, t_anchor,
                       refiner.extent)
