"""Wall-clock budgets: which refinement step is the last one inside each time budget.

A refinement run of K steps reports per-step durations d_1..d_K (seconds, rendering of the
evaluation excluded); the cumulative time after k steps is c_k = d_1 + ... + d_k, c_0 = 0. The
state reported for budget b is the one after the LAST step k with c_k <= b (k = 0, the
initialisation, always qualifies). If the whole run fits in b, the final state is reported and the
point is marked `exhausted` (the run was too short to use the budget).
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class BudgetHit:
    """Step chosen for one budget (see module docstring)."""

    budget: float
    step: int
    seconds: float
    exhausted: bool


def cumulative_seconds(step_seconds: Sequence[float]) -> list[float]:
    """Per-step durations [K] -> cumulative times [K + 1] with c_0 = 0; rejects negative or non-finite values."""
    out = [0.0]
    for i, d in enumerate(step_seconds):
        d = float(d)
        if not math.isfinite(d) or d < 0:
            raise ValueError(f"step_seconds[{i}]: expected a finite duration >= 0, got {d}")
        out.append(out[-1] + d)
    return out


def budget_steps(step_seconds: Sequence[float], budgets: Sequence[float]) -> list[BudgetHit]:
    """For each budget (seconds), the last step whose cumulative refinement time fits in it.

    step_seconds: per-step durations of steps 1..K. Returns one BudgetHit per budget, in order.
    """
    cum = cumulative_seconds(step_seconds)
    hits = []
    for b in budgets:
        b = float(b)
        if not math.isfinite(b) or b < 0:
            raise ValueError(f"budget: expected a finite number of seconds >= 0, got {b}")
        # cum is non-decreasing and cum[0] = 0 <= b; a 1e-9 relative slack absorbs summation round-off
        k = bisect.bisect_right(cum, b * (1 + 1e-9) + 1e-12) - 1
        hits.append(BudgetHit(budget=b, step=k, seconds=cum[k], exhausted=k == len(cum) - 1))
    return hits


class BudgetRecorder:
    """A `refine` callback that keeps the few states a budget can resolve to, with bounded memory.

    The budget rule uses `RefineResult.step_seconds` (c_k = d_1 + ... + d_k), known only after the
    run. Online the recorder measures e_k = time outside this callback from the end of the first
    callback to the start of callback k (e_1 = 0), so c_k = c_1 + e_k - (loop overhead) with the
    unknown c_1 in [0, I_1], I_1 = the time from `start()` to the first callback (the refiner's
    setup plus step 1). Budget b resolves to the last k with c_k <= b, hence to a k with
        b - I_1 - d_{k+1} - slack  <  e_k  <=  b + slack,
    and the recorder keeps (a clone of) every state in that window, estimating d_{k+1} by twice the
    longest step interval seen so far; `select(step_seconds, recorded)` then picks the exact step.
    slack = slack_fraction * b + slack_seconds absorbs the loop's own overhead. At most
    `max_window` states are kept per budget. Cloning happens inside the callback, whose time
    `refine` does not count.
    """

    def __init__(self, budgets: Sequence[float], slack_fraction: float = 0.02, slack_seconds: float = 0.02,
                 max_window: int = 64):
        self.budgets = [float(b) for b in budgets]
        self.slack_fraction = float(slack_fraction)
        self.slack_seconds = float(slack_seconds)
        self.max_window = int(max_window)
        self.kept: dict[int, object] = {}  # step -> Gaussians (detached clones), union of the windows
        self._windows: list[list[tuple[int, float]]] = [[] for _ in self.budgets]  # per budget: (step, e_k)
        self._last: float | None = None
        self._first_interval: float | None = None  # I_1
        self._e = 0.0
        self._longest = 0.0  # longest interval between two callbacks (one step plus overhead)

    def start(self) -> None:
        """Call right before `refine` (starts the recorder's clock)."""
        self._last = time.perf_counter()

    def __call__(self, step: int, gaussians, state=None, loss: float | None = None) -> None:
        """refine's callback(step, gaussians, state, loss): keeps the states near each budget."""
        if self._last is None:
            raise RuntimeError("BudgetRecorder: call start() right before refine")
        now = time.perf_counter()
        if self._first_interval is None:
            self._first_interval = now - self._last
            self._longest = self._first_interval  # setup + step 1: a generous first guess of a step's length
            e = 0.0
        else:
            interval = now - self._last
            self._longest = max(self._longest, interval)
            e = self._e + interval
        self._e = e
        clone = None
        for window, b in zip(self._windows, self.budgets):
            slack = self.slack_fraction * b + self.slack_seconds
            lower = b - self._first_interval - 2.0 * self._longest - slack
            if not lower < e <= b + slack:
                continue
            if clone is None:
                clone = gaussians.detach().clone()
                self.kept[step] = clone
            window.append((step, e))
            if len(window) > self.max_window:
                window.pop(0)
        self._forget()
        self._last = time.perf_counter()
        return None

    def _forget(self) -> None:
        """Drops kept states that left every window."""
        live = {k for window in self._windows for k, _ in window}
        for k in [k for k in self.kept if k not in live]:
            del self.kept[k]

    def select(self, step_seconds: Sequence[float], recorded: dict) -> list[tuple[BudgetHit, object, bool]]:
        """(hit, state, exact) per budget: the state after the hit's step, from `recorded` (refine's
        record_steps, which must hold step 0 and the final step) or from the kept states. exact is
        False only if that step was not kept (a step far slower than the ones before it); the
        nearest earlier state is returned then, and the hit names its step."""
        out = []
        for hit in budget_steps(step_seconds, self.budgets):
            state = recorded.get(hit.step, self.kept.get(hit.step))
            if state is not None:
                out.append((hit, state, True))
                continue
            have = sorted(k for k in set(recorded) | set(self.kept) if k <= hit.step)
            if not have:
                raise RuntimeError(f"BudgetRecorder: no state at or before step {hit.step} (record step 0)")
            k = have[-1]
            cum = cumulative_seconds(step_seconds)
            approx = BudgetHit(hit.budget, k, cum[k], hit.exhausted and k == len(cum) - 1)
            out.append((approx, recorded.get(k, self.kept.get(k)), False))
        return out
