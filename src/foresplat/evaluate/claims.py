"""The paper's claim, checked against measured numbers (never asserted): MetaGrad vs vanilla.

On mean PSNR curves over held-out scenes (`EvalReport`):
  1. the MetaGrad head ends higher than the vanilla head after the longest refinement, by at
     least `min_gain` dB (paper: +0.4 to +0.9 dB; the project's target +0.5 dB);
  2. it reaches the vanilla head's final PSNR within `max_fraction` of the steps (paper: ~1/4);
  3. both learned initialisations beat every non-learned baseline at every step count.
Also reported, not required: whether MetaGrad starts lower at step 0 (as in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from foresplat.evaluate.derived import derived_figures, mean_curves
from foresplat.evaluate.results import EvalReport


@dataclass
class Claim:
    """One checked statement: holds is True / False, or None when the numbers to check it are missing."""

    statement: str
    holds: bool | None
    evidence: str
    required: bool = True


def check_claims(report: EvalReport, metagrad: str = "metagrad", vanilla: str = "vanilla",
                 baselines: Sequence[str] = ("points", "random"), min_gain: float = 0.5,
                 max_fraction: float = 0.25) -> list[Claim]:
    """Evaluates the claims on `report`'s mean curves (see module docstring)."""
    curves = mean_curves(report)
    steps = report.steps
    last = steps[-1]
    have = {n for n, c in curves.items() if sorted(c.steps) == sorted(steps)}
    missing = [n for n in (metagrad, vanilla) if n not in have]
    if missing:
        why = f"no complete results for {missing} (scenes evaluated by every method: {len(report.ok_scenes())})"
        return [Claim(f"MetaGrad ends >= {min_gain:+.1f} dB above vanilla after {last} steps", None, why),
                Claim(f"MetaGrad reaches vanilla's final PSNR in <= {max_fraction:.2g} of the steps", None, why),
                Claim("both learned initialisations beat the baselines at every step count", None, why)]
    m = {k: curves[metagrad].steps[k]["psnr"] for k in steps}
    v = {k: curves[vanilla].steps[k]["psnr"] for k in steps}
    d = next(x for x in derived_figures(curves, vanilla) if x.method == metagrad)
    claims = [Claim(f"MetaGrad ends >= {min_gain:+.1f} dB above vanilla after {last} steps",
                    d.final_gain >= min_gain,
                    f"{metagrad} {m[last]:.2f} dB vs {vanilla} {v[last]:.2f} dB: {d.final_gain:+.2f} dB "
                    f"(peak {d.peak_gain:+.2f} dB at step {d.peak_gain_step})")]
    reach = d.steps_to_reference_final
    if reach is None:
        claims.append(Claim(f"MetaGrad reaches vanilla's final PSNR in <= {max_fraction:.2g} of the steps", False,
                            f"{metagrad} never reaches {vanilla}'s final {v[last]:.2f} dB within {last} steps"))
    else:
        claims.append(Claim(f"MetaGrad reaches vanilla's final PSNR in <= {max_fraction:.2g} of the steps",
                            reach <= max_fraction * last,
                            f"{metagrad} reaches {v[last]:.2f} dB at step {reach:.0f} of {last} "
                            f"({reach / last if last else 0:.2f} of the steps)"))
    present = [b for b in baselines if b in have]
    if not present:
        claims.append(Claim("both learned initialisations beat the baselines at every step count", None,
                            f"no complete results for the baselines {list(baselines)}"))
    else:
        worst = None  # smallest margin learned - baseline over all steps
        for k in steps:
            best_base = max(curves[b].steps[k]["psnr"] for b in present)
            margin = min(m[k], v[k]) - best_base
            if worst is None or margin < worst[0]:
                worst = (margin, k)
        claims.append(Claim("both learned initialisations beat the baselines at every step count", worst[0] > 0,
                            f"smallest margin of min({metagrad}, {vanilla}) over the best of {present}: "
                            f"{worst[0]:+.2f} dB at step {worst[1]}"))
    claims.append(Claim("MetaGrad starts lower than vanilla at step 0 (paper's observation, not required)",
                        m[steps[0]] < v[steps[0]],
                        f"step {steps[0]}: {metagrad} {m[steps[0]]:.2f} dB vs {vanilla} {v[steps[0]]:.2f} dB",
                        required=False))
    return claims


def verdict_text(claims: Sequence[Claim], where: str = "held-out synthetic scenes") -> str:
    """Human-readable verdict: one line per claim and an overall line computed from them."""
    lines = [f"Verdict on {where} (computed from the table above):"]
    for c in claims:
        mark = "n/a " if c.holds is None else ("PASS" if c.holds else "FAIL")
        lines.append(f"  [{mark}] {c.statement}: {c.evidence}")
    req = [c for c in claims if c.required]
    if any(c.holds is None for c in req):
        overall = "NOT CHECKED: some numbers are missing"
    elif all(c.holds for c in req):
        overall = "REPRODUCED: every required claim holds"
    else:
        failed = sum(1 for c in req if not c.holds)
        overall = f"NOT REPRODUCED: {failed} of {len(req)} required claims fail on these numbers"
    lines.append(f"  => {overall}")
    return "\n".join(lines)
