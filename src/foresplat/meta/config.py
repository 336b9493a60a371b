"""`RuleConfig`: every setting of the training rules (vanilla, metagrad, reptile, dense, unrolled).

How the defaults were chosen (the paper: K ~ U{50..500}, stride 40, for a 2k-step refiner on
224-448 px images; this project trains on CPU-sized scenes of ~64-128 px, where evaluation refines
for a few hundred steps):
  * K ~ U{10..100}: the same 1:10 ratio of K_min:K_max as the paper, scaled down ~5x so that one
    outer iteration costs ~0.5-5 s of refinement here; K_max stays within the step counts we
    evaluate (0, 50, 100, 200, ...), so the head is trained for the regime it is used in.
  * stride 10: the paper places 2..13 anchors per inner run (K/40 for K in 50..500, plus 0 and K);
    stride 10 over K in 10..100 gives 2..11, the same range.
  * anchor_views_per_anchor 1: the anchor gradient is a stochastic estimate over the anchor views
    (one random view per anchor, like the refiner's own batch-1 step); its cost is then one
    forward+backward render per anchor, so an outer iteration costs about (1 + 1/stride) x the K
    plain refinement steps (<= 1.2x, the budget of issue 6). `None` uses every anchor view.
  * anchor_views "target": the paper's objective is quality on held-out views after refinement;
    L is the training loss, evaluated where the zero-step loss evaluates it (see zero_step_views).
    "context" and "both" are supported so that the choice can be measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from foresplat.refine.config import RefineConfig

RuleName = Literal["vanilla", "metagrad", "reptile", "dense", "unrolled"]
ViewSet = Literal["context", "target", "both"]


@dataclass
class RuleConfig:
    """Settings of a training rule; `build_rule(config)` turns it into a callable rule."""

    name: RuleName = "vanilla"
    """Which rule: vanilla (zero-step loss only), metagrad, reptile, dense (metagrad, stride 1), unrolled (exact)."""
    lam: float = 0.0
    """lambda: weight of the zero-step loss L(G0); the rest (1 - lam) goes to the refinement term (vanilla ignores it: always 1)."""
    k_min: int = 10
    """Smallest number of inner refinement steps K (K ~ U{k_min..k_max}, drawn from the rule's generator)."""
    k_max: int = 100
    """Largest number of inner refinement steps K."""
    stride: int = 10
    """An anchor every `stride` inner steps (k % stride == 0); `dense` forces 1."""
    anchor_first: bool = True
    """Step 0 (G0 itself) is an anchor."""
    anchor_last: bool = True
    """Step K (the refined result) is an anchor even when K % stride != 0."""
    anchor_views: ViewSet = "target"
    """Views the anchor loss L(G_k) is evaluated on: the split's context (input) views, target (held-out) views, or both."""
    anchor_views_per_anchor: int | None = 1
    """Views drawn (from the generator, without replacement) from `anchor_views` at each anchor; None = all of them."""
    zero_step_views: ViewSet = "both"
    """Views the zero-step loss L(G0) is evaluated on (vanilla training renders target and context views)."""
    log_zero_step: bool = True
    """With lam = 0, still evaluate L(G0) without a graph for the logs (one forward render of zero_step_views); off saves that time."""
    mse_weight: float = 1.0
    """Weight of the mean squared error in the rule loss L = mse_weight * MSE + ssim_weight * (1 - SSIM)."""
    ssim_weight: float = 0.2
    """Weight of (1 - SSIM) in the rule loss L (Gaussian window 11, sigma 1.5; smaller images get a smaller odd window)."""
    backend: str = "auto"
    """Render backend for the rule's own renders (zero-step and anchor losses); unrolled always uses "reference"."""
    refine: RefineConfig = field(default_factory=RefineConfig)
    """The inner refiner's settings; `steps` is only the horizon of the means lr decay (the rule runs K of them), `seed` is unused (views come from the rule's generator)."""
    unrolled_max_k: int = 8
    """unrolled refuses K > unrolled_max_k (memory and time grow linearly in K; small scenes only)."""
    unrolled_eps: float | None = 1e-8
    """Adam eps used by the unrolled rule's differentiable refiner (None = the refiner's own, 1e-15; see unrolled.py)."""
    unrolled_float64: bool = True
    """unrolled: run the differentiable refinement in float64 (G0 and the views are cast; the loss is cast back)."""
    reptile_normalize: bool = True
    """reptile: divide G0 - G_K by K x the refiner's per-field learning rate (a gradient-like mean step) instead of by K only."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "RuleConfig":
        """Raises ValueError naming the field when a setting is out of range."""
        names = ("vanilla", "metagrad", "reptile", "dense", "unrolled")
        if self.name not in names:
            raise ValueError(f"RuleConfig.name: expected one of {names}, got {self.name!r}")
        if not 0.0 <= float(self.lam) <= 1.0:
            raise ValueError(f"RuleConfig.lam: expected a weight in [0, 1], got {self.lam}")
        if self.k_min < 0 or self.k_max < self.k_min:
            raise ValueError(f"RuleConfig.k_min/k_max: need 0 <= k_min <= k_max, got {self.k_min}, {self.k_max}")
        if self.stride < 1:
            raise ValueError(f"RuleConfig.stride: expected >= 1, got {self.stride}")
        if not (self.anchor_first or self.anchor_last) and self.k_min < self.stride and self.name != "vanilla":
            raise ValueError("RuleConfig.anchor_first/anchor_last: with both off, a draw K < stride "
                             f"has no anchor; need k_min >= stride ({self.k_min} < {self.stride})")
        for fname in ("anchor_views", "zero_step_views"):
            if getattr(self, fname) not in ("context", "target", "both"):
                raise ValueError(f"RuleConfig.{fname}: expected context, target or both, "
                                 f"got {getattr(self, fname)!r}")
        if self.anchor_views_per_anchor is not None and self.anchor_views_per_anchor < 1:
            raise ValueError(f"RuleConfig.anchor_views_per_anchor: expected >= 1 or None, "
                             f"got {self.anchor_views_per_anchor}")
        if self.mse_weight < 0 or self.ssim_weight < 0 or self.mse_weight + self.ssim_weight <= 0:
            raise ValueError(f"RuleConfig.mse_weight/ssim_weight: need non-negative weights with a "
                             f"positive sum, got {self.mse_weight}, {self.ssim_weight}")
        if self.unrolled_max_k < 0:
            raise ValueError(f"RuleConfig.unrolled_max_k: expected >= 0, got {self.unrolled_max_k}")
        if self.unrolled_eps is not None and not self.unrolled_eps > 0:
            raise ValueError(f"RuleConfig.unrolled_eps: expected > 0 or None, got {self.unrolled_eps}")
        return self
