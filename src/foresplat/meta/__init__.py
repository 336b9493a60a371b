"""Training rules (vanilla, metagrad, reptile, dense, unrolled): see base.py for the interface.

    rule = build_rule(RuleConfig(name="metagrad"))
    out = rule(g0, split, generator)   # g0: unbatched Gaussians attached to the head
    out.loss.backward()                # puts the rule's gradient on the head
"""

from foresplat.meta.base import RuleOutput, TrainingRule
from foresplat.meta.config import RuleConfig
from foresplat.meta.loss import image_loss, render_loss, view_set
from foresplat.meta.metagrad import MetaGradRule, surrogate
from foresplat.meta.reptile import ReptileRule
from foresplat.meta.schedule import anchor_steps, pick_views, sample_k
from foresplat.meta.unrolled import UnrolledRule
from foresplat.meta.vanilla import VanillaRule


def build_rule(config: RuleConfig) -> TrainingRule:
    """The rule named by `config.name`, configured by `config` (validated first).

    vanilla -> VanillaRule, metagrad -> MetaGradRule, dense -> MetaGradRule(stride 1),
    reptile -> ReptileRule, unrolled -> UnrolledRule (raises if k_max > unrolled_max_k).
    """
    config.validate()
    if config.name == "vanilla":
        return VanillaRule(config)
    if config.name == "metagrad":
        return MetaGradRule(config)
    if config.name == "dense":
        return MetaGradRule(config, dense=True)
    if config.name == "reptile":
        return ReptileRule(config)
    if config.name == "unrolled":
        return UnrolledRule(config)
    raise ValueError(f"build_rule: unknown rule {config.name!r}")


__all__ = ["MetaGradRule", "ReptileRule", "RuleConfig", "RuleOutput", "TrainingRule", "UnrolledRule",
           "VanillaRule", "anchor_steps", "build_rule", "image_loss", "pick_views", "render_loss",
           "sample_k", "surrogate", "view_set"]
