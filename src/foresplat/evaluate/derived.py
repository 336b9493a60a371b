"""Means over scenes and the derived figures: steps to reach a reference PSNR, peak gain over it.

Curves are mean values over the scenes on which every method succeeded (`EvalReport.ok_scenes`),
so every method is averaged over the same scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from foresplat.evaluate.results import EvalReport

METRICS = ("psnr", "ssim", "lpips")


@dataclass
class MeanCurves:
    """Mean metrics of one method over scenes: per step count and per (nominal) budget."""

    method: str
    num_scenes: int
    steps: dict[int, dict[str, float | None]] = field(default_factory=dict)
    """step -> {"psnr", "ssim", "lpips"} (lpips None when not computed)."""
    budgets: dict[float, dict[str, float | None]] = field(default_factory=dict)
    """nominal budget -> {"psnr", "ssim", "lpips", "step" (mean step reached), "seconds", "exhausted" and "approx"
    (fractions of scenes whose run ended within the budget / whose exact state was not kept)}."""
    predict_seconds: float = float("nan")
    refine_seconds: float = float("nan")
    num_gaussians: float = float("nan")


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    if not vals or len(vals) != len(values):
        return None
    return sum(vals) / len(vals)


def mean_curves(report: EvalReport) -> dict[str, MeanCurves]:
    """Per-method means over `report.ok_scenes()` (methods with no complete scene get empty curves)."""
    scenes = report.ok_scenes()
    out: dict[str, MeanCurves] = {}
    for name in report.methods:
        rs = [s.method(name) for s in scenes]
        mc = MeanCurves(name, len(rs))
        if rs:
            for k in report.steps:
                qs = [r.steps.get(k) for r in rs]
                if all(q is not None for q in qs):
                    mc.steps[k] = {m: _mean([getattr(q, m) for q in qs]) for m in METRICS}
            for i, nominal in enumerate(report.budgets):
                pts = [r.budgets[i] if i < len(r.budgets) else None for r in rs]
                if all(p is not None and p.quality is not None for p in pts):
                    row = {m: _mean([getattr(p.quality, m) for p in pts]) for m in METRICS}
                    row["step"] = _mean([p.step for p in pts])
                    row["seconds"] = _mean([p.seconds for p in pts])
                    row["exhausted"] = _mean([1.0 if p.exhausted else 0.0 for p in pts])
                    row["approx"] = _mean([0.0 if p.exact else 1.0 for p in pts])
                    mc.budgets[float(nominal)] = row
            mc.predict_seconds = sum(r.predict_seconds for r in rs) / len(rs)
            mc.refine_seconds = sum(r.refine_seconds for r in rs) / len(rs)
            mc.num_gaussians = sum(r.num_gaussians for r in rs) / len(rs)
        out[name] = mc
    return out


def steps_to_reach(steps: Sequence[int], values: Sequence[float], target: float) -> float | None:
    """First step count at which the curve reaches `target`, linearly interpolated between recorded steps.

    steps must be increasing. Returns steps[0] if the curve starts at or above target, None ("never")
    if it never reaches it within the recorded steps.
    """
    if len(steps) != len(values) or not steps:
        raise ValueError(f"steps_to_reach: need equally long non-empty steps/values, got {len(steps)}/{len(values)}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"steps_to_reach: steps must be strictly increasing, got {list(steps)}")
    if values[0] >= target:
        return float(steps[0])
    for (s0, v0), (s1, v1) in zip(zip(steps, values), zip(steps[1:], values[1:])):
        if v1 >= target:
            return float(s0 + (target - v0) / (v1 - v0) * (s1 - s0))  # v0 < target <= v1
    return None


@dataclass
class Derived:
    """Derived figures of one method against the reference (vanilla) method, on mean PSNR curves."""

    method: str
    reference: str
    reference_final_psnr: float
    """The reference's mean PSNR after the largest step count."""
    steps_to_reference_final: float | None
    """Steps this method needs to reach reference_final_psnr (interpolated), None = never."""
    fraction_of_steps: float | None
    """steps_to_reference_final / the largest step count."""
    final_gain: float
    """Mean PSNR gain over the reference after the largest step count (dB)."""
    peak_gain: float
    """Largest mean PSNR gain over the reference across the recorded step counts (dB)."""
    peak_gain_step: int


def derived_figures(curves: dict[str, MeanCurves], reference: str) -> list[Derived]:
    """Derived figures of every method with a complete PSNR curve against `reference`."""
    ref = curves.get(reference)
    if ref is None or not ref.steps:
        return []
    steps = sorted(ref.steps)
    ref_psnr = [ref.steps[k]["psnr"] for k in steps]
    target = ref_psnr[-1]
    out = []
    for name, mc in curves.items():
        if sorted(mc.steps) != steps:
            continue
        vals = [mc.steps[k]["psnr"] for k in steps]
        reach = steps_to_reach(steps, vals, target)
        gains = [v - r for v, r in zip(vals, ref_psnr)]
        i = max(range(len(gains)), key=lambda j: gains[j])
        out.append(Derived(
            method=name, reference=reference, reference_final_psnr=target,
            steps_to_reference_final=reach,
            fraction_of_steps=None if reach is None or steps[-1] == 0 else reach / steps[-1],
            final_gain=gains[-1], peak_gain=gains[i], peak_gain_step=steps[i]))
    return out


def pick_reference(methods: Sequence[str], requested: str | None = None) -> str | None:
    """The reference method: `requested` if given (must exist), else the first name containing "vanilla"."""
    if requested is not None:
        if requested not in methods:
            raise ValueError(f"reference method {requested!r} is not among the evaluated methods {list(methods)}")
        return requested
    return next((m for m in methods if "vanilla" in m.lower()), None)


def is_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
