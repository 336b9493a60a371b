"""Fine-tunes of a predictor with a training rule: the control and the treatment of the paper's test.

`rule_finetune_config` builds the TrainConfig of one fine-tune (the head only by default, the whole
network with train_backbone=True; the predictor's weights from `base`); everything but the rule is a
function of the arguments, so a vanilla and a MetaGrad fine-tune built with the same arguments see the
same scenes, views and seeds (matched budgets). Used by `foresplat demo` and `foresplat experiment claim`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from foresplat.meta import RuleConfig
from foresplat.train.config import TrainConfig, train_preset


def rule_finetune_config(rule: str, base: str | Path, *, preset: str, iterations: int, lr: float, seed: int,
                         out_dir: str | Path, k_min: int, k_max: int, stride: int, lam: float = 0.0,
                         train_backbone: bool = False, rule_overrides: dict[str, Any] | None = None,
                         **overrides: Any) -> TrainConfig:
    """TrainConfig of a fine-tune of `base` with rule `rule` (vanilla, metagrad, ...): the Gaussian head
    only (train_backbone False, the default) or the whole network.

    preset: foresplat.train preset giving the model-independent sizes (views, image size, scene pool);
    warm-up is a tenth of `iterations`; no validation scenes (the caller evaluates); `overrides` are
    further TrainConfig fields (backend, device, progress, width, ...), `rule_overrides` RuleConfig fields.
    """
    rc = RuleConfig(name=rule, lam=lam, k_min=k_min, k_max=k_max, stride=stride, **(rule_overrides or {}))
    fields = dict(rule=rc, init_checkpoint=str(base), train_backbone=train_backbone, iterations=iterations, lr=lr,
                  warmup=max(1, iterations // 10), seed=seed, val_scenes=0, out_dir=str(out_dir))
    fields.update(overrides)
    return train_preset(preset, **fields)
