"""`foresplat demo`: the paper's experiment at its horizons, scaled to a CPU: two head fine-tunes, evaluation.

    foresplat demo              # ~12 min on 2 CPU cores: fine-tune (vanilla + MetaGrad) the shipped base, evaluate
    foresplat demo --quick      # under a minute: a tiny base trained in-process (what CI runs)
    foresplat demo --real       # also the real evaluation scenes of ../shared/data (adds ~10 min)

Stages (each prints its progress):
  1. base model: the shipped vanilla-trained predictor `default-base` (foresplat.models.pretrained;
     its training command is in its JSON), or one trained in-process (`--quick`, `--from-scratch`);
  2. two head-only fine-tunes from the base with EQUAL budgets (same outer iterations, scenes and seed;
     only the rule differs): `vanilla` and `metagrad` (lambda 0.5, K ~ U{50..500}, stride 40, the
     refiner's 2,000-step horizon), built by the claim experiment's own `finetune_config`;
  3. `foresplat eval` protocol on held-out synthetic scenes (the claim experiment's scene sources) at
     0 / 200 / 500 / 1000 / 2000 refinement steps, against sparse-point and random starts, and on the
     real evaluation scenes with --real;
  4. the tables, the plot paths, and a verdict on the paper's claim computed from the numbers
     (foresplat.evaluate.claims): it says NOT REPRODUCED with the numbers when they disagree.

One seed and a few scenes: the demo shows the curve's shape, not a confidence interval;
`foresplat experiment claim --preset cpu` (about an hour) is the same fine-tunes with 3 seeds x 16
scenes and bootstrap CIs (docs/CLAIM.md).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from foresplat.evaluate.claims import check_claims, verdict_text
from foresplat.evaluate.protocol import EvalConfig, EvalOutputs, MethodSpec, build_methods, evaluate
from foresplat.experiment.config import ClaimConfig
from foresplat.io.atomic import atomic_write_json

DEMO_PRESETS: dict[str, ClaimConfig] = {
    "full": ClaimConfig(
        name="demo", base="default-base", train_preset="real", train_size=48, seeds=(0,),
        finetune_iterations=60, finetune_lr=1e-2, lam=0.5, k_min=50, k_max=500, stride=40, refine_horizon=2000,
        eval_scenes=6, eval_seed_offset=1000, image_size=48, num_context=6, num_target=4,
        steps=(0, 200, 500, 1000, 2000), budgets=(1.0, 2.0, 5.0, 10.0, 20.0), time_scale=0.1,
        min_eval_scenes=6, min_seeds=1),
    "quick": ClaimConfig(
        name="demo-quick", base="train", base_iterations=6, train_preset="tiny", seeds=(0,),
        finetune_iterations=3, finetune_lr=1e-3, lam=0.0, k_min=2, k_max=6, stride=2, refine_horizon=20,
        eval_scenes=2, eval_seed_offset=1000, image_size=32, num_context=4, num_target=2, steps=(0, 5, 10, 20),
        budgets=(1.0, 2.0, 5.0), time_scale=0.02, match_within=5, min_eval_scenes=2, min_seeds=1),
}
"""full: `foresplat demo`, the cpu claim preset's fine-tunes (docs/CLAIM.md: lambda 0.5 was the better lambda
there) with one seed, 60 instead of 100 outer iterations, and 6 held-out scenes (seeds EVAL_SEED_START + 1000 + i,
away from the claim experiment's 2000 + i); quick: `foresplat demo --quick` (CI smoke run, under a minute idle).
`seeds[0]` is replaced by --seed."""


@dataclass
class DemoCommand:
    """Fine-tune the shipped base's head with vanilla and MetaGrad, and evaluate both to 2,000 refinement steps
    on held-out synthetic scenes (no data needed)."""

    quick: bool = False
    """Run the under-a-minute smoke version (tiny model trained in-process, few iterations, small scenes)."""
    from_scratch: bool = False
    """Train the base model instead of using the shipped `default-base` (full preset: the `real` training
    preset, about 70 min on 2 cores, reading the real training captures of the data folder)."""
    out: Path = Path("runs/demo")
    """Output folder (a sub-folder `full` or `quick` is (re)written)."""
    seed: int = 0
    """Seed of training (model init, scene draws, rule generators) and refinement."""
    real: bool = False
    """Also evaluate the real evaluation scenes of the shared data folder (full preset: adds ~10 min)."""
    data: Path | None = None
    """Real-scene folder (default: $FORESPLAT_DATA, else a shared/data folder next to the repository)."""
    time_scale: float | None = None
    """Override the preset's budget multiplier (larger on slower machines)."""
    backend: Literal["auto", "reference", "cpu", "gsplat"] = "auto"
    """Render backend for training and evaluation (foresplat.render)."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Device for training and evaluation (the demo is sized for a CPU; budgets are wall-clock)."""
    progress: bool = True
    """Show progress bars."""
    sh_degree: int | None = None
    """SH degree of the evaluation's .ply files (0..3, zero-padded; 3 = what the original 3DGS code loads)."""


@dataclass
class DemoResult:
    """What the demo produced: evaluation outputs per scene set, claims, paths and timings."""

    synthetic: EvalOutputs
    real: EvalOutputs | None
    verdict: str
    claims: list
    run_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)


def _stage(msg: str) -> None:
    print(f"\n=== {msg}", flush=True)


def demo_config(cmd: DemoCommand) -> ClaimConfig:
    """The preset of `cmd` (full or quick) with its seed, backend and device applied."""
    preset = DEMO_PRESETS["quick" if cmd.quick else "full"]
    overrides = dict(seeds=(cmd.seed,), backend=cmd.backend, device=cmd.device)
    if cmd.from_scratch:
        overrides["base"] = "train"
    if cmd.time_scale is not None:
        overrides["time_scale"] = cmd.time_scale
    return preset.with_overrides(**overrides)


def _base_checkpoint(config: ClaimConfig, cmd: DemoCommand, run_dir: Path, seconds: dict) -> Path:
    """The shipped base (config.base names it) or, with base "train", one trained into run_dir/base."""
    from foresplat.experiment.runner import base_checkpoint

    if config.base != "train":
        path = base_checkpoint(config, run_dir, cmd.progress)
        print(f"using the shipped base model {config.base!r} ({path}; --from-scratch trains one instead)")
        return path
    t0 = time.perf_counter()
    _claim(run_dir, "base")  # recorded before base_checkpoint creates it
    print(f"training the base model: preset {config.train_preset!r}"
          + (f", {config.base_iterations} iterations" if config.base_iterations else ""), flush=True)
    path = base_checkpoint(config, run_dir, cmd.progress)
    seconds["base"] = time.perf_counter() - t0
    return path


def _finetune(rule: str, base: Path, config: ClaimConfig, cmd: DemoCommand, run_dir: Path) -> Path:
    """Head-only fine-tune from `base` with `rule` (the claim experiment's config: only the rule differs)."""
    from foresplat.experiment.runner import finetune_config
    from foresplat.train import train

    return train(finetune_config(config, rule, base, config.seeds[0], _claim(run_dir, rule), cmd.progress))


def _eval_config(config: ClaimConfig, cmd: DemoCommand, **kw) -> EvalConfig:
    from foresplat.refine import RefineConfig

    return EvalConfig(steps=config.steps, budgets=config.budgets, time_scale=config.time_scale,
                      num_context=config.num_context, num_target=config.num_target,
                      refine=RefineConfig(seed=config.seeds[0], backend=config.backend), device=config.device,
                      sh_degree=cmd.sh_degree, **kw)


def _real_sources(cmd: DemoCommand, config: ClaimConfig):
    from foresplat.evaluate.sources import find_shared_data, path_sources

    if cmd.data is not None:
        root = cmd.data
    else:
        env = os.environ.get("FORESPLAT_DATA")
        root = find_shared_data()
        if env and root is None:
            print(f"FORESPLAT_DATA={env} is not a folder: skipping real scenes")
    if root is None:
        print("no shared/data folder found (set FORESPLAT_DATA): skipping real scenes")
        return None, []
    # only the evaluation scenes (foresplat.data.catalog): the visible ones and the held-out real ones
    return root, path_sources(root, which="evaluation", max_views=config.num_context + config.num_target)


OWNED = ("base", "vanilla", "metagrad", "eval_synthetic", "eval_real")
"""The only entries of a run folder the demo ever creates (and so may delete on a rerun)."""
MARKER_KIND = "foresplat demo"


def _read_marker(run_dir: Path) -> dict | None:
    """The run folder's demo.json when `foresplat demo` wrote it (its `written_by` and `written`
    list of created entries), else None."""
    import json

    try:
        record = json.loads((run_dir / "demo.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (isinstance(record, dict) and record.get("written_by") == MARKER_KIND
            and isinstance(record.get("written"), list) and all(isinstance(n, str) for n in record["written"])):
        return record
    return None


def _write_marker(run_dir: Path, record: dict) -> None:
    atomic_write_json(run_dir / "demo.json", {**record, "written_by": MARKER_KIND})


def _claim(run_dir: Path, name: str) -> Path:
    """Records `name` in demo.json BEFORE creating it (a killed run still knows what it wrote) and
    returns run_dir/name; refuses an existing entry this demo did not write."""
    assert name in OWNED, name
    record = _read_marker(run_dir)
    if record is None:
        raise FileExistsError(f"{run_dir / 'demo.json'} is missing or was replaced during the run")
    path = run_dir / name
    if name not in record["written"]:
        if os.path.lexists(path):
            raise FileExistsError(f"{path} exists and was not written by `foresplat demo`; "
                                  "choose another --out")
        record["written"].append(name)
        _write_marker(run_dir, record)
    return path


def _prepare_run_dir(cmd: DemoCommand) -> Path:
    """The run folder (out/quick or out/full): created, or a previous demo run's own entries (as
    recorded in its demo.json) deleted and nothing else; FileExistsError for any other folder."""
    run_dir = cmd.out / ("quick" if cmd.quick else "full")
    if os.path.lexists(run_dir) and not run_dir.is_dir():
        raise FileExistsError(f"{run_dir} exists and is not a folder; choose another --out")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        record = _read_marker(run_dir)
        if record is None:
            raise FileExistsError(f"{run_dir} exists and holds no record of a `foresplat demo` run (its demo.json "
                                  "is missing, or was not written by this version of the demo); choose another --out")
        print(f"replacing the previous demo results in {run_dir}")
        for name in record["written"]:
            path = run_dir / name
            if name not in OWNED or path.is_symlink():  # never follow a link or delete a foreign name
                continue
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_marker(run_dir, {"status": "running", "command": sys.argv, "written": []})
    return run_dir


def run_demo(cmd: DemoCommand) -> DemoResult:
    """Runs the whole demo (see module docstring) and returns its results; prints as it goes."""
    from foresplat.experiment.runner import scene_sources

    config = demo_config(cmd)
    t_all = time.perf_counter()
    run_dir = _prepare_run_dir(cmd)
    seconds: dict[str, float] = {}
    print(f"foresplat demo ({'quick' if cmd.quick else 'full'} preset): {asdict(config)}")

    _stage("1/4 base model (vanilla-trained)")
    base = _base_checkpoint(config, cmd, run_dir, seconds)

    ckpts = {}
    for i, rule in enumerate(("vanilla", "metagrad")):
        _stage(f"{2 + i / 2:.1f}/4 head fine-tune with rule {rule!r}: {config.finetune_iterations} iterations, "
               "same scenes and seed as the other rule")
        t0 = time.perf_counter()
        ckpts[rule] = _finetune(rule, base, config, cmd, run_dir)
        seconds[f"finetune_{rule}"] = time.perf_counter() - t0

    methods = build_methods([MethodSpec(r, "checkpoint", p) for r, p in ckpts.items()], ("points", "random"))
    _stage(f"3/4 evaluation on {config.eval_scenes} held-out synthetic scenes, {config.steps[-1]} refinement steps")
    t0 = time.perf_counter()
    syn = evaluate(scene_sources(config, "synthetic"), methods,
                   _eval_config(config, cmd, reference="vanilla"), _claim(run_dir, "eval_synthetic"),
                   progress=cmd.progress,
                   title_notes=[f"foresplat demo, held-out synthetic scenes, seed {config.seeds[0]}",
                                "points baseline: the generator's exact surface points seen by the context views "
                                "(ground-truth depth, no noise: an idealised SfM)"])
    seconds["eval_synthetic"] = time.perf_counter() - t0
    claims = check_claims(syn.report)
    verdict = verdict_text(claims)

    real = None
    if cmd.real:
        _stage("3b/4 evaluation on the real evaluation scenes of the shared data folder")
        root, sources = _real_sources(cmd, config)
        if sources:
            t0 = time.perf_counter()
            real = evaluate(sources, methods, _eval_config(config, cmd, reference="vanilla",
                                                           image_size=config.image_size),
                            _claim(run_dir, "eval_real"), progress=cmd.progress,
                            title_notes=[f"real scenes from {root}, resized to {config.image_size} px (longest side)"])
            seconds["eval_real"] = time.perf_counter() - t0

    seconds["total"] = time.perf_counter() - t_all
    _stage("4/4 results")
    print(syn.markdown)
    if real is not None:
        print(real.markdown)
    print(verdict)
    print("(one seed and a few scenes: `foresplat experiment claim --preset cpu` gives the same comparison with "
          "confidence intervals)")
    for label, outputs in (("synthetic", syn), ("real", real)):
        if outputs is not None:
            for key, path in outputs.plots.items():
                print(f"plot ({label}) {key}: {path}")
            print(f"tables ({label}): {outputs.tables['markdown']}")
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    _write_marker(run_dir, {
        "written": _read_marker(run_dir)["written"], "status": "done", "command": sys.argv,
        "preset": asdict(config), "seed": config.seeds[0],
        "base_checkpoint": str(base), "checkpoints": {k: str(v) for k, v in ckpts.items()},
        "seconds": seconds, "verdict": verdict,
        "claims": [asdict(c) for c in claims],
        "tables": {"synthetic": {k: str(v) for k, v in syn.tables.items()},
                   "real": None if real is None else {k: str(v) for k, v in real.tables.items()}}})
    return DemoResult(syn, real, verdict, claims, run_dir, seconds)


def main(argv: list[str]) -> int:
    """Entry point of `foresplat demo`."""
    cmd = tyro.cli(DemoCommand, args=argv, prog="foresplat demo")
    result = run_demo(cmd)  # errors: one line, exit 2, through foresplat.errors.run_command
    return 0 if result.synthetic.report.ok_scenes() else 1

