"""Evaluation: quality versus refinement steps and versus wall-clock, tables, plots, image grids.

The protocol (`foresplat eval`, `evaluate(...)`), defaults = the paper's:
    * per scene 12 context + 4 target views (`split_views`, rule "even"); methods = predictor
      checkpoints + the non-learned baselines "points" (3DGS init from the sparse points a context
      view sees) and "random" (uniform in the scene bounds, as many Gaussians as the first checkpoint);
    * initial Gaussians (timed separately: "init s"), then ONE `refine` run of max(steps) Adam steps
      on the context views; PSNR / SSIM (/ LPIPS with --lpips-weights) on the target views after
      steps 0, 200, 500, 1000, 2000 and after wall-clock budgets +1, +2, +5, +10, +20 s x time_scale
      (the state after the last step whose cumulative RefineResult.step_seconds fit in the budget);
    * means over the scenes every method completed; derived figures against the vanilla model
      (steps to reach its final PSNR, interpolated, or "never"; final and peak PSNR gain);
    * outputs (atomic): results.md/.csv/.json, psnr_vs_steps.png, psnr_vs_seconds.png,
      ply/<scene>/<method>.ply (final step), grids/<scene>.png (truth | step 0 | final per method).
`foresplat demo` runs the same protocol with a CPU-scaled preset (commands/demo.py, DEMO_PRESETS:
6 + 4 views at 48 px, the paper's steps 0/200/500/1k/2k, budgets x 0.1) and checks the paper's claim
(`claims.check_claims`) from the numbers.

Modules: metrics (PSNR, SSIM), lpips (optional, local weights), budget (time budgets), results
(records), derived (means, derived figures), tables, plots, grid, claims, protocol, sources.
"""

from foresplat.evaluate.budget import BudgetHit, BudgetRecorder, budget_steps
from foresplat.evaluate.claims import Claim, check_claims, verdict_text
from foresplat.evaluate.derived import Derived, MeanCurves, derived_figures, mean_curves, steps_to_reach
from foresplat.evaluate.lpips import LPIPS, load_lpips
from foresplat.evaluate.metrics import psnr, ssim
from foresplat.evaluate.protocol import (EvalConfig, EvalOutputs, MethodSpec, SceneSource, build_methods,
                                         evaluate, evaluate_scene, prepare_scene)
from foresplat.evaluate.results import BudgetPoint, EvalReport, MethodResult, Quality, SceneResult
from foresplat.evaluate.sources import find_shared_data, path_sources, synthetic_sources
from foresplat.evaluate.tables import csv_table, markdown_table, write_tables

__all__ = [
    "BudgetHit", "BudgetPoint", "BudgetRecorder", "Claim", "Derived", "EvalConfig", "EvalOutputs", "EvalReport",
    "LPIPS", "MeanCurves", "MethodResult", "MethodSpec", "Quality", "SceneResult", "SceneSource", "budget_steps",
    "build_methods", "check_claims", "csv_table", "derived_figures", "evaluate", "evaluate_scene",
    "find_shared_data", "load_lpips", "markdown_table", "mean_curves", "path_sources", "prepare_scene", "psnr",
    "ssim", "steps_to_reach", "synthetic_sources", "verdict_text", "write_tables",
]
