"""The random choices of one outer iteration, drawn from the rule's generator in a fixed order.

Order of draws (shared by every refining rule, so that metagrad, dense and unrolled given the
same generator seed see the same K, the same refiner views and the same anchor views):
    1. K ~ U{k_min .. k_max}                         (sample_k)
    2. for k = 0 .. K:
         if k is an anchor: the anchor's views       (pick_views)
         if k < K:          the refiner's step-k view (inside Refiner.step)
"""

from __future__ import annotations

import torch

from foresplat.data.scene import Scene
from foresplat.meta.config import RuleConfig


def sample_k(config: RuleConfig, generator: torch.Generator) -> int:
    """K ~ Uniform{k_min .. k_max} (inclusive), one draw from `generator`."""
    return int(torch.randint(config.k_min, config.k_max + 1, (1,), generator=generator).item())


def anchor_steps(k: int, stride: int, anchor_first: bool = True, anchor_last: bool = True) -> list[int]:
    """Sorted anchor steps in 0..k: every multiple of `stride` (0 only if anchor_first), plus k if anchor_last."""
    if k < 0 or stride < 1:
        raise ValueError(f"anchor_steps: need k >= 0 and stride >= 1, got k={k}, stride={stride}")
    steps = {s for s in range(0, k + 1, stride) if s != 0 or anchor_first}
    if anchor_last:
        steps.add(k)
    return sorted(steps)


def pick_views(views: Scene, n: int | None, generator: torch.Generator) -> Scene:
    """`n` distinct views of `views` drawn from `generator` (sorted), or all of them when n is None.

    Draws nothing when n is None or n >= the number of views.
    """
    if n is None or n >= views.num_views:
        return views
    idx = torch.randperm(views.num_views, generator=generator)[:n].sort().values
    return views.subset(idx)
