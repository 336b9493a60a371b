"""Head-only fine-tuning of any ModelAdapter with a training rule (MetaGrad by default).

    logs = finetune_head(adapter, splits, HeadFinetuneConfig(iterations=200))

The frozen part runs once per scene (`encode`, no autograd graph; features cached for a fixed list
of scenes, recomputed for a stream); each iteration takes the next scene, decodes G0 [N] from the
head, lets the rule (foresplat.meta, which sees only Gaussians) turn it into a surrogate loss, and
takes one Adam step on the head's parameters. The backbone's parameters never receive a gradient
and are never handed to the optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from foresplat.data.scene import SceneSplit
from foresplat.meta import RuleConfig, build_rule
from foresplat.models.adapter import ModelAdapter, check_views


MAX_SKIPPED_START = 10
"""A stream of scenes whose first this many all fail to encode is an error (not a skip)."""


@dataclass
class HeadFinetuneConfig:
    """Settings of finetune_head."""

    rule: RuleConfig = field(default_factory=lambda: RuleConfig(name="metagrad"))
    """The training rule (metagrad: the paper's head fine-tuning)."""
    iterations: int = 100
    """Optimizer steps (scenes are visited in turn)."""
    lr: float = 1e-4
    """Adam learning rate of the head."""
    grad_clip: float = 1.0
    """Clip of the head's gradient norm (0: no clipping)."""
    seed: int = 0
    """Seed of the rules' generators (K draws, view picks)."""

    def validate(self) -> "HeadFinetuneConfig":
        """Raises ValueError naming the field."""
        self.rule.validate()
        if self.iterations < 0:
            raise ValueError(f"HeadFinetuneConfig.iterations: expected >= 0, got {self.iterations}")
        if not self.lr > 0 or self.grad_clip < 0:
            raise ValueError(f"HeadFinetuneConfig.lr/grad_clip: expected > 0 / >= 0, got {self.lr}, {self.grad_clip}")
        return self


def _encode(adapter: ModelAdapter, split: SceneSplit, dev: torch.device):
    c = split.context.to(device=dev, dtype=torch.float32)
    t = lambda x: torch.tensor([float(x)], device=dev)  # noqa: E731
    views = (c.images[None], c.cameras.viewmats[None], c.cameras.Ks[None], t(c.near), t(c.far))
    check_views(*views, adapter.divisor, adapter.needs_cameras)
    with torch.no_grad():
        return adapter.encode(*views)


def finetune_head(adapter: ModelAdapter, splits: Sequence[SceneSplit] | Callable[[int], SceneSplit],
                  config: HeadFinetuneConfig, on_step: Callable[[dict], None] | None = None) -> list[dict]:
    """Trains adapter.head in place (module docstring); returns one log dict per iteration.

    splits: a list of scenes (visited in turn; the frozen features are computed once per scene) or a
    function iteration -> scene (a stream, e.g. foresplat.train.data.sample_split; encoded each time).
    on_step(log) is called after every step. In a stream, a scene that fails to encode with a ValueError
    (e.g. predicted cameras no similarity fits) is skipped and logged as {"skipped": reason}."""
    config.validate()
    if not callable(splits) and not splits:
        raise ValueError("finetune_head: splits is empty (need at least one scene)")
    dev = next(adapter.head_parameters()).device
    rule = build_rule(config.rule)
    cached = None if callable(splits) else [_encode(adapter, s, dev) for s in splits]
    params = [p for p in adapter.head_parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr)
    logs = []
    for it in range(config.iterations):
        if cached is None:
            split = splits(it)
            try:
                features = _encode(adapter, split, dev)
            except ValueError as e:  # e.g. a pose-free model's cameras that no similarity fits
                log = {"iteration": it, "scene": split.context.name, "skipped": str(e)}
                logs.append(log)
                if on_step is not None:
                    on_step(log)
                if it + 1 >= MAX_SKIPPED_START and all("skipped" in x for x in logs):
                    raise ValueError(f"finetune_head: the first {it + 1} scenes all failed to encode, "
                                     f"the last with: {e}") from e
                continue
        else:
            split, features = splits[it % len(splits)], cached[it % len(splits)]
        split = SceneSplit(split.context.to(dev), split.target.to(dev), split.context_indices, split.target_indices)
        g0 = adapter.decode(adapter.run_head(features), features)[0]  # Gaussians [N], attached to the head
        out = rule(g0, split, torch.Generator().manual_seed(config.seed * 1_000_003 + it))
        if not bool(torch.isfinite(out.loss.detach())):
            raise FloatingPointError(f"finetune_head: iteration {it}: loss {float(out.loss.detach())} "
                                     f"(scene {split.context.name!r})")
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else math.inf)
        opt.step()
        log = {"iteration": it, "scene": split.context.name, "loss": float(out.loss.detach()),
               "grad_norm": float(gnorm), **{k: float(v) for k, v in out.logs.items()}}
        if getattr(features, "alignment", None) is not None:
            log.update({f"alignment/{k}": v for k, v in features.alignment[0].summary().items()})
        logs.append(log)
        if on_step is not None:
            on_step(log)
    return logs
