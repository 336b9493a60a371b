"""Statistics of the paired MetaGrad - vanilla comparison: differences, bootstrap CIs, steps to match.

The data of one scene set is a grid over training seeds s, scenes j and x (a step count or a budget):
    V[s, j, x] = PSNR of the vanilla head of seed s on scene j after x,   M[s, j, x] likewise for MetaGrad
    D[s, j, x] = M[s, j, x] - V[s, j, x]      (paired: same base, scene, views and refiner seed)
The estimate at x is the grand mean of D over seeds and scenes. Its 95% confidence interval is a
two-level percentile bootstrap: each replicate draws S seeds and J scenes with replacement
(independently) and takes the mean of D over the drawn S x J cells; the interval is the 2.5 / 97.5
percentiles of the replicates. With one seed this is the ordinary scene bootstrap of a paired mean.
Steps to match: the first step (linear interpolation between recorded steps) at which MetaGrad's mean
curve reaches vanilla's final mean PSNR (foresplat.evaluate.derived.steps_to_reach), None = never.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from foresplat.evaluate.derived import steps_to_reach


def paired_differences(treatment: np.ndarray, control: np.ndarray) -> np.ndarray:
    """treatment - control, elementwise, for arrays [S, J, X] (seeds, scenes, x); ValueError on a shape
    mismatch or a non-finite value (a missing cell must be dropped before, not silently averaged)."""
    t, c = np.asarray(treatment, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if t.shape != c.shape or t.ndim != 3:
        raise ValueError(f"paired_differences: expected two [seeds, scenes, x] arrays of equal shape, "
                         f"got {t.shape} and {c.shape}")
    if not (np.isfinite(t).all() and np.isfinite(c).all()):
        raise ValueError("paired_differences: non-finite PSNR values (drop failed scenes first)")
    return t - c


@dataclass
class Interval:
    """A mean with its bootstrap confidence interval (same unit as the data)."""

    mean: float
    low: float
    high: float
    level: float

    @property
    def above_zero(self) -> bool:
        return self.low > 0.0


def _indices(rng: np.random.Generator, n_boot: int, n: int, resample: bool) -> np.ndarray:
    if not resample or n == 1:
        return np.broadcast_to(np.arange(n), (n_boot, n))
    return rng.integers(0, n, size=(n_boot, n))


def bootstrap_means(d: np.ndarray, n_boot: int = 2000, seed: int = 0, resample_seeds: bool = True,
                    resample_scenes: bool = True) -> np.ndarray:
    """Bootstrap replicates [n_boot, X] of the grand mean over seeds and scenes of d [S, J, X]."""
    d = np.asarray(d, dtype=np.float64)
    if d.ndim != 3 or d.shape[0] < 1 or d.shape[1] < 1:
        raise ValueError(f"bootstrap_means: expected d [seeds >= 1, scenes >= 1, x], got {d.shape}")
    if n_boot < 1:
        raise ValueError(f"bootstrap_means: n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    s_idx = _indices(rng, n_boot, d.shape[0], resample_seeds)  # [B, S]
    j_idx = _indices(rng, n_boot, d.shape[1], resample_scenes)  # [B, J]
    out = np.empty((n_boot, d.shape[2]))
    for b in range(n_boot):  # [S*, J*, X] -> [X]; a loop keeps the memory at one replicate
        out[b] = d[s_idx[b]][:, j_idx[b]].mean(axis=(0, 1))
    return out


def bootstrap_ci(d: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0,
                 resample_seeds: bool = True, resample_scenes: bool = True) -> list[Interval]:
    """Per x: the grand mean of d [S, J, X] and its percentile bootstrap interval at `level`."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_ci: level must be in (0, 1), got {level}")
    reps = bootstrap_means(d, n_boot, seed, resample_seeds, resample_scenes)  # [B, X]
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2], axis=0)
    mean = np.asarray(d, dtype=np.float64).mean(axis=(0, 1))
    return [Interval(float(m), float(a), float(b), level) for m, a, b in zip(mean, lo, hi)]


def steps_to_match(steps: Sequence[int], treatment: Sequence[float], control: Sequence[float]) -> float | None:
    """Steps the treatment curve needs to reach the control curve's LAST value (interpolated; None = never)."""
    if len(control) != len(steps):
        raise ValueError(f"steps_to_match: {len(steps)} steps but {len(control)} control values")
    return steps_to_reach(list(steps), list(treatment), float(control[-1]))


def bootstrap_steps_to_match(steps: Sequence[int], m: np.ndarray, v: np.ndarray, level: float = 0.95,
                             n_boot: int = 2000, seed: int = 0) -> tuple[float | None, float, float]:
    """(point estimate, low, high) of steps_to_match on the mean curves of m, v [S, J, X] (x = steps).

    Replicates resample seeds and scenes as bootstrap_means (the same cells for both heads); a
    replicate that never matches counts as +inf, so an open interval shows as high = inf.
    """
    m, v = np.asarray(m, dtype=np.float64), np.asarray(v, dtype=np.float64)
    point = steps_to_match(steps, m.mean(axis=(0, 1)), v.mean(axis=(0, 1)))
    both = np.concatenate([m, v], axis=2)  # [S, J, 2X]: one draw of cells for both heads
    reps = bootstrap_means(both, n_boot, seed)  # [B, 2X]
    x = len(steps)
    vals = [steps_to_match(steps, r[:x], r[x:]) for r in reps]
    arr = np.array([math.inf if s is None else s for s in vals])
    lo, hi = np.quantile(arr, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")  # no inf - inf
    return point, float(lo), float(hi)
