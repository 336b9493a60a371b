"""`vanilla`: the control rule, the zero-step loss only (lambda = 1, no refinement)."""

from __future__ import annotations

import time

import torch

from foresplat.data.scene import SceneSplit
from foresplat.gaussians import Gaussians
from foresplat.meta.base import RuleOutput
from foresplat.meta.config import RuleConfig
from foresplat.meta.loss import render_loss, view_set


def check_g0(g0: Gaussians) -> None:
    """Raises ValueError unless g0 is one unbatched, valid set of Gaussians."""
    if not isinstance(g0, Gaussians):
        raise TypeError(f"training rule: g0 must be a foresplat.Gaussians, got {type(g0).__name__}")
    if g0.batch_shape:
        raise ValueError(f"training rule: g0 must be unbatched (one scene), got batch shape "
                         f"{list(g0.batch_shape)}; call the rule once per scene")
    g0.validate("g0")


class VanillaRule:
    """loss = L(G0) on `zero_step_views` (see foresplat.meta.loss); the generator is not used."""

    def __init__(self, config: RuleConfig):
        self.config = config

    def __call__(self, g0: Gaussians, split: SceneSplit, generator: torch.Generator) -> RuleOutput:
        """G0 (unbatched, attached to the head) -> RuleOutput(L(G0), logs)."""
        check_g0(g0)
        t0 = time.perf_counter()
        loss = render_loss(g0, view_set(split, self.config.zero_step_views), self.config)
        logs = {"K": 0.0, "num_anchors": 0.0, "zero_step_loss": float(loss.detach()),
                "time_zero_step": time.perf_counter() - t0, "time_inner": 0.0, "time_anchor": 0.0}
        return RuleOutput(loss, logs)
