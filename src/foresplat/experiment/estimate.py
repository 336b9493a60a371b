"""A measured estimate of a claim run's duration on this machine (`foresplat experiment claim --plan`).

The work is almost all refinement steps of one size (the fine-tunes' inner loops and the evaluation),
so the estimate times `probe_steps` refiner steps of the base's prediction on the first evaluation
scene and multiplies:
    metagrad fine-tunes   seeds x iterations x batch x E[K] x t_step x (1 + 1/stride)   (+ anchors)
    vanilla fine-tunes    seeds x iterations x batch x 2 x t_step  (one render + backward per scene, roughly)
    evaluation            seeds x 2 heads x scenes x max(steps) x t_step
Base training (base="train") and the real scenes are not included. The estimate is as good as the
machine's load is steady: it is measured now, on a shared machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from foresplat.experiment.config import ClaimConfig


@dataclass
class Estimate:
    """Seconds per refinement step measured now, and the estimated seconds of each part of a run."""

    step_seconds: float
    metagrad: float
    vanilla: float
    evaluation: float

    @property
    def total(self) -> float:
        return self.metagrad + self.vanilla + self.evaluation


def estimate(config: ClaimConfig, probe_steps: int = 30) -> Estimate:
    """Times `probe_steps` refinement steps at the evaluation size and scales them to the whole run."""
    from foresplat.data.scene import split_views
    from foresplat.evaluate.protocol import prepare_scene
    from foresplat.experiment.runner import eval_config, scene_sources
    from foresplat.models import Predictor
    from foresplat.models.pretrained import resolve_checkpoint
    from foresplat.refine import refine
    from foresplat.train import train_preset

    if probe_steps < 2:
        raise ValueError(f"estimate: probe_steps must be >= 2, got {probe_steps}")
    if config.base == "train":
        model = Predictor(train_preset(config.train_preset).model)
    else:
        model = Predictor.from_checkpoint(resolve_checkpoint(config.base))
    model.to(config.device).eval()
    ec = eval_config(config, real=False)
    scene = prepare_scene(scene_sources(config, "synthetic")[0].load(), None, model.divisor)
    split = split_views(scene, ec.num_context, ec.num_target, ec.split, ec.split_seed)
    context = split.context.to(config.device)
    g0 = model.predict(context).detach()
    cfg = replace(ec.refine, steps=probe_steps)
    refine(g0, context, replace(cfg, steps=2))  # warm-up (lazy imports, first-call set-up)
    t0 = time.perf_counter()
    refine(g0, context, cfg)
    t = (time.perf_counter() - t0) / probe_steps
    batch = train_preset(config.train_preset).batch_size
    n_ft = len(config.seeds) * config.finetune_iterations * batch
    mean_k = (config.k_min + config.k_max) / 2
    return Estimate(step_seconds=t, metagrad=n_ft * mean_k * t * (1 + 1 / config.stride), vanilla=n_ft * 2 * t,
                    evaluation=len(config.seeds) * 2 * config.eval_scenes * config.steps[-1] * t)
