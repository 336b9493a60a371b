"""`foresplat experiment claim`: the paper's MetaGrad claim, tested with matched fine-tunes and bootstrap CIs.

    foresplat experiment claim --preset smoke                      # seconds: the pipeline end to end
    foresplat experiment claim --preset cpu --out runs/claim-cpu   # ~1-2 h on 2 cores (estimated); --resume continues
    foresplat experiment claim --preset gpu --plan                 # print the resolved paper-scale config
    foresplat experiment study runs/claim-cpu runs/claim-lam0      # one table over finished runs

For each training seed: a vanilla and a MetaGrad head-only fine-tune of one base predictor with the
same budget, scenes and seed; every head refined on unseen scenes for 0..2000 steps and wall-clock
budgets; per-scene paired differences MetaGrad - vanilla with a bootstrap CI over scenes and seeds,
steps to reach vanilla's final PSNR, and a verdict computed from them (foresplat.experiment).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from foresplat.experiment.config import Treatment
from foresplat.models.head import HeadOutput

EXPERIMENTS = {"claim": "MetaGrad vs vanilla head fine-tunes at the paper's horizons, with confidence intervals",
               "study": "one table over finished claim runs: what each changed, its paired differences and claims"}


@dataclass
class ClaimCommand:
    """Test the paper's claim: matched vanilla / MetaGrad head fine-tunes, paired evaluation, bootstrap CIs."""

    preset: Literal["smoke", "cpu", "gpu"] = "cpu"
    """Sizes (foresplat.experiment.config.CLAIM_PRESETS): smoke (seconds), cpu (~1-2 h on 2 cores, estimated), gpu (paper scale)."""
    out: Annotated[Path | None, tyro.conf.arg(aliases=("--out-dir",))] = None
    """Output folder (default runs/claim-<preset>); --out-dir is the same option."""
    resume: bool = False
    """Continue a run in --out: finished fine-tunes and evaluations are kept, the rest is computed."""
    report_only: bool = False
    """Compute nothing: analyse the evaluations already stored in --out (of a finished or running run)."""
    control_from: Path | None = None
    """An earlier claim run whose config differs only in lambda, K, stride or anchor views: its vanilla arm
    (fine-tunes and evaluations, which do not depend on them) is copied instead of recomputed."""
    plan: bool = False
    """Only print the resolved config and the amount of work, then exit."""
    estimate: bool = True
    """With --plan: time a few refinement steps here and estimate the run's duration (seconds of work)."""
    base_ckpt: str | None = None
    """Base predictor checkpoint (default: the preset's: the shipped one, or "train" for a trained tiny base)."""
    seeds: tuple[int, ...] | None = None
    """Override the training seeds (>= 3 for a verdict)."""
    finetune_iterations: int | None = None
    """Override the outer iterations of each fine-tune."""
    finetune_lr: float | None = None
    """Override the fine-tunes' peak learning rate."""
    finetune_backbone: bool | None = None
    """True: the fine-tunes train the whole network (default: the Gaussian head only, backbone frozen)."""
    head_outputs: tuple[HeadOutput, ...] | None = None
    """Head-only fine-tunes that train only the head's last layer, and only its rows for these outputs
    (default: the whole head)."""
    treatment: Treatment | None = None
    """Override the rule compared with vanilla (default metagrad; dense, reptile and unrolled are references;
    unrolled needs --k-max <= 8)."""
    lam: float | None = None
    """Override MetaGrad's lambda (weight of the zero-step loss, in [0, 1))."""
    k_min: int | None = None
    """Override the smallest K of MetaGrad's inner refinement."""
    k_max: int | None = None
    """Override the largest K."""
    stride: int | None = None
    """Override MetaGrad's anchor stride (paper: 40; Table 5 ablates 1 / 20 / 80)."""
    anchor_views: Literal["context", "target", "both"] | None = None
    """Override the views MetaGrad's anchors score (default target: held-out views of each training scene)."""
    synthetic_pool: int | None = None
    """Override the number of distinct synthetic fine-tuning scenes (0 = an endless stream)."""
    synthetic_only: bool | None = None
    """False: fine-tune on the train preset's mix of real training captures and synthetic scenes (default
    True: synthetic scenes only)."""
    image_size: int | None = None
    """Override the side of the synthetic evaluation scenes (longest side of real ones), pixels."""
    train_size: int | None = None
    """Override the side of the square fine-tuning scenes, pixels (a multiple of the predictor's divisor)."""
    eval_scenes: int | None = None
    """Override the number of unseen synthetic scenes (>= 16 for a verdict)."""
    real: bool | None = None
    """Also evaluate the real evaluation scenes (default: the preset's)."""
    data: Path | None = None
    """Real-scene folder (default: $FORESPLAT_DATA, else a shared/data folder next to the repository)."""
    backend: Literal["auto", "reference", "cpu", "gsplat"] | None = None
    """Override the render backend."""
    device: Literal["cpu", "cuda"] | None = None
    """Override the device."""
    progress: bool = True
    """Show progress bars."""


@dataclass
class StudyCommand:
    """Tabulate finished claim runs: the options each changed against its preset, treatment - vanilla at
    every step with its CI, steps to match and the two claims (foresplat.experiment.study)."""

    runs: tyro.conf.Positional[tuple[Path, ...]]
    """Claim run folders (each holds claim.json and results/<scenes>/claim.json)."""
    scenes: Literal["synthetic", "real"] = "synthetic"
    """Which scene set's analysis to tabulate."""
    out: Path | None = None
    """Also write the table here (.md) and, beside it, the long-format .csv."""


def study(cmd: StudyCommand) -> int:
    """Prints (and with --out writes) the study table of cmd.runs."""
    from foresplat.errors import UsageError
    from foresplat.experiment.study import load_row, study_csv, study_markdown
    from foresplat.io.atomic import atomic_write_text

    if not cmd.runs:
        raise UsageError("experiment study: expected one or more claim run folders")
    if cmd.out is not None and cmd.out.suffix.lower() == ".csv":
        raise UsageError(f"--out {cmd.out}: expected the .md path (the .csv is written beside it)")
    rows = [load_row(run, cmd.scenes) for run in cmd.runs]
    table = study_markdown(rows)
    print(table, end="")
    if cmd.out is not None:
        atomic_write_text(cmd.out, table)
        atomic_write_text(cmd.out.with_suffix(".csv"), study_csv(rows))
        print(f"wrote {cmd.out} and {cmd.out.with_suffix('.csv')}")
    return 0


def resolve(cmd: ClaimCommand):
    """The validated ClaimConfig of the command (ValueError naming the field on bad input)."""
    from foresplat.experiment import claim_preset

    return claim_preset(cmd.preset, base=cmd.base_ckpt, seeds=cmd.seeds, finetune_iterations=cmd.finetune_iterations,
                        finetune_lr=cmd.finetune_lr, finetune_backbone=cmd.finetune_backbone,
                        head_outputs=cmd.head_outputs, treatment=cmd.treatment, lam=cmd.lam, k_min=cmd.k_min,
                        k_max=cmd.k_max, stride=cmd.stride, anchor_views=cmd.anchor_views,
                        synthetic_pool=cmd.synthetic_pool, synthetic_only=cmd.synthetic_only,
                        eval_scenes=cmd.eval_scenes, image_size=cmd.image_size, train_size=cmd.train_size,
                        real_scenes=cmd.real, backend=cmd.backend, device=cmd.device)


def _plan(config) -> str:
    fts = 2 * len(config.seeds)
    cells = fts * config.eval_scenes
    return (f"preset {config.name}: {asdict(config)}\n"
            f"work: {fts} fine-tunes of {config.finetune_iterations} outer iterations; {cells} synthetic evaluation "
            f"cells (head x scene) of {config.steps[-1]} refinement steps"
            + (" + the real evaluation scenes" if config.real_scenes else ""))


def _usage() -> str:
    return ("usage: foresplat experiment NAME [OPTIONS]\n\nexperiments:\n"
            + "\n".join(f"  {k}  {v}" for k, v in EXPERIMENTS.items())
            + "\n\nRun `foresplat experiment NAME --help` for its options.")


def main(argv: list[str]) -> int:
    """Entry point of `foresplat experiment`."""
    from foresplat.errors import UsageError

    if argv and argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if not argv:
        raise UsageError("experiment: expected an experiment name: " + ", ".join(EXPERIMENTS))
    if argv[0] not in EXPERIMENTS:
        raise UsageError(f"experiment: unknown experiment {argv[0]!r}; available: {sorted(EXPERIMENTS)}")
    if argv[0] == "study":
        return study(tyro.cli(StudyCommand, args=argv[1:], prog="foresplat experiment study"))
    cmd = tyro.cli(ClaimCommand, args=argv[1:], prog="foresplat experiment claim")
    config = resolve(cmd)
    if cmd.plan:
        print(_plan(config))
        import torch

        if cmd.estimate and config.device == "cuda" and not torch.cuda.is_available():
            print("estimate: skipped (the preset runs on CUDA, which this machine does not have)")
        elif cmd.estimate:
            from foresplat.experiment.estimate import estimate

            e = estimate(config)
            print(f"estimate on this machine now: {e.step_seconds * 1e3:.1f} ms per refinement step at the evaluation "
                  f"size -> MetaGrad fine-tunes {e.metagrad / 60:.0f} min, vanilla fine-tunes {e.vanilla / 60:.0f} min, "
                  f"evaluation {e.evaluation / 60:.0f} min, total {e.total / 3600:.1f} h (synthetic scenes; no base "
                  "training, no real scenes)")
        return 0
    from foresplat.experiment import run_claim

    run = run_claim(config, cmd.out or Path(f"runs/claim-{config.name}"), resume=cmd.resume,
                    progress=cmd.progress, data=cmd.data, report_only=cmd.report_only,
                    control_from=cmd.control_from)
    return 0 if run.analyses and all(a.scenes for a in run.analyses.values()) else 1
