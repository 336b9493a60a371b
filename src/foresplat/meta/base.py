"""The training-rule interface: a rule turns a prediction G0 into a surrogate loss.

A rule is called once per scene per outer iteration with G0 still attached to the predictor's
graph; `RuleOutput.loss.backward()` then puts the rule's gradient on the trainable parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from foresplat.data.scene import SceneSplit
from foresplat.gaussians import Gaussians


@dataclass
class RuleOutput:
    """What one rule evaluation returns: a scalar surrogate loss and float logs."""

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


class TrainingRule(Protocol):
    """A training rule: (G0 attached to the head, the scene split, a generator) -> RuleOutput."""

    def __call__(self, g0: Gaussians, split: SceneSplit, generator: torch.Generator) -> RuleOutput: ...
