"""Reproduction experiments: `foresplat experiment claim` tests the paper's MetaGrad claim with statistics.

    from foresplat.experiment import claim_preset, run_claim
    run = run_claim(claim_preset("smoke"), "runs/claim-smoke")     # verdicts in run.analyses[set].verdict

Modules: config (ClaimConfig, CLAIM_PRESETS), runner (fine-tunes, resumable per-scene cells), stats
(paired differences, bootstrap CIs, steps to match), report (analysis, md/csv/json, plot with CI band),
study (one table over finished runs: `foresplat experiment study`).
"""

from foresplat.experiment.config import CLAIM_PRESETS, ClaimConfig, claim_preset
from foresplat.experiment.runner import ClaimRun, run_claim
from foresplat.experiment.stats import (Interval, bootstrap_ci, bootstrap_means, bootstrap_steps_to_match,
                                        paired_differences, steps_to_match)

__all__ = ["CLAIM_PRESETS", "ClaimConfig", "ClaimRun", "Interval", "bootstrap_ci", "bootstrap_means",
           "bootstrap_steps_to_match", "claim_preset", "paired_differences", "run_claim", "steps_to_match"]
