"""Result records of an evaluation: metrics per (scene, method) after step counts and time budgets.

Plain dataclasses that round-trip through JSON (`to_dict` / `from_dict`), so tables, plots and the
demo's verdict can be rebuilt from `results.json` without re-running anything.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Quality:
    """Mean over the target views of one scene: PSNR (dB), SSIM, and LPIPS (None = not computed)."""

    psnr: float
    ssim: float
    lpips: float | None = None


@dataclass
class BudgetPoint:
    """The state reported for one wall-clock budget: the last refinement step within it."""

    budget: float
    """The budget in seconds of refinement, already multiplied by the config's time_scale."""
    nominal: float
    """The budget as configured (before time_scale), used as the column label (+1 s, +2 s, ...)."""
    step: int
    """Last step whose cumulative refinement time is <= budget (0 = the initialisation itself)."""
    seconds: float
    """Cumulative refinement time at that step."""
    exhausted: bool
    """True when the whole refinement run ended within the budget (the state is the final one)."""
    quality: Quality | None = None
    exact: bool = True
    """False when the exact step's state was not kept (BudgetRecorder) and an earlier one is reported."""


@dataclass
class MethodResult:
    """One method (checkpoint or baseline) on one scene; `error` is set when it failed."""

    method: str
    scene: str
    steps: dict[int, Quality] = field(default_factory=dict)
    """Step count -> quality on the target views after that many refinement steps."""
    budgets: list[BudgetPoint] = field(default_factory=list)
    predict_seconds: float = 0.0
    """Time to produce the initial Gaussians (the predictor's forward pass, or the baseline's init)."""
    refine_seconds: float = 0.0
    """Total refinement time over all steps (sum of the per-step times)."""
    num_gaussians: int = 0
    target_alpha: float | None = None
    """Mean rendered alpha of the initial Gaussians on the target views (coverage of the start)."""
    final_loss: float | None = None
    ply: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class SceneResult:
    """All methods on one scene; `error` is set when the scene itself could not be loaded or split."""

    scene: str
    source: str = ""
    methods: list[MethodResult] = field(default_factory=list)
    grid: str | None = None
    error: str | None = None
    num_context: int = 0
    num_target: int = 0
    width: int = 0
    height: int = 0

    def method(self, name: str) -> MethodResult | None:
        """The result of method `name`, or None."""
        return next((m for m in self.methods if m.method == name), None)


@dataclass
class EvalReport:
    """Everything an evaluation produced: config summary, per-scene results and notes."""

    methods: list[str]
    steps: list[int]
    budgets: list[float]
    """Nominal budgets (seconds, before time_scale)."""
    time_scale: float
    scenes: list[SceneResult] = field(default_factory=list)
    reference: str | None = None
    """The method derived figures compare against (the vanilla model), or None."""
    lpips_note: str = "LPIPS: not computed (no weights)"
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def lpips_computed(self) -> bool:
        return any(q.lpips is not None for s in self.scenes for m in s.methods for q in m.steps.values())

    def ok_scenes(self) -> list[SceneResult]:
        """Scenes on which every method succeeded (the ones means are taken over)."""
        return [s for s in self.scenes if s.error is None
                and all((m := s.method(name)) is not None and m.ok for name in self.methods)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (non-finite floats become None)."""
        return json_safe(asdict(self))

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "EvalReport":
        """Inverse of `to_dict` (also reads `results.json`; missing metrics come back as NaN)."""

        def quality(q: dict | None) -> Quality | None:
            if q is None:
                return None
            return Quality(_num(q["psnr"]), _num(q["ssim"]), None if q.get("lpips") is None else float(q["lpips"]))

        scenes = []
        for s in d.get("scenes", []):
            methods = []
            for m in s.get("methods", []):
                mr = MethodResult(**{k: v for k, v in m.items() if k not in ("steps", "budgets")})
                mr.steps = {int(k): quality(v) for k, v in m.get("steps", {}).items()}
                mr.budgets = [BudgetPoint(**{**b, "quality": quality(b.get("quality"))}) for b in m.get("budgets", [])]
                methods.append(mr)
            scenes.append(SceneResult(**{**{k: v for k, v in s.items() if k != "methods"}, "methods": methods}))
        own = {f.name for f in fields(EvalReport)} - {"scenes"}
        rest = {k: v for k, v in d.items() if k in own}  # derived keys ("mean", "derived") are recomputed
        return EvalReport(**rest, scenes=scenes)


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def json_safe(x: Any) -> Any:
    """Recursively converts tuples to lists, keys to str and non-finite floats to None (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x
