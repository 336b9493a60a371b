"""`foresplat demo`: the paper's experiment, scaled to a CPU: base model, two head fine-tunes, evaluation.

    foresplat demo              # ~15 min on 2 CPU cores: train, fine-tune (vanilla + MetaGrad), evaluate
    foresplat demo --quick      # 1-2 min smoke version (what CI runs)
    foresplat demo --from-scratch   # retrain the base model too, even if one ships with the package

Stages (each prints its progress):
  1. base model: a compact vanilla predictor trained on synthetic scenes (`foresplat train --preset
     demo`), or the checkpoint shipped in foresplat/assets/demo_base.* (see `SHIPPED_BASE_COMMAND`);
  2. two head-only fine-tunes from the base with EQUAL budgets (same outer iterations, same scenes,
     same seed; only the rule differs): `vanilla` and `metagrad` (lam = 0);
  3. `foresplat eval` protocol on held-out synthetic scenes (seeds from EVAL_SEED_START) and on the
     real scenes in ../shared/data (or $FORESPLAT_DATA) when present, resized small;
  4. the tables, the plot paths, and a verdict on the paper's claim computed from the numbers
     (foresplat.evaluate.claims): it says NOT REPRODUCED with the numbers when they disagree.

The evaluation protocol's defaults are the paper's (12 + 4 views, steps 0/200/500/1k/2k, budgets
+1..+20 s); the demo presets below scale them to this machine (DEMO_PRESETS, documented per field).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import tyro

from foresplat.evaluate.claims import check_claims, verdict_text
from foresplat.evaluate.protocol import EvalConfig, EvalOutputs, MethodSpec, build_methods, evaluate
from foresplat.io.atomic import atomic_write_json

ASSET_STEM = Path(__file__).resolve().parents[1] / "assets" / "demo_base"
"""Shipped base checkpoint (<stem>.safetensors + <stem>.json), used unless --from-scratch."""
SHIPPED_BASE_COMMAND = "foresplat train --preset demo --rule vanilla --seed 0 --val-scenes 0 --out runs/demo_base"
"""The command whose output (runs/demo_base/model.*) is shipped as assets/demo_base.* (base_iterations = the
preset's `iterations`); `foresplat demo --from-scratch` runs the same training in-process."""


@dataclass(frozen=True)
class DemoPreset:
    """Sizes of one demo run (the paper's protocol scaled to a CPU)."""

    train_preset: str
    """foresplat.train preset for the base model and the fine-tunes (model size, views, image size, scene pool)."""
    base_iterations: int | None
    """Outer iterations of the base model (None: the train preset's own)."""
    finetune_iterations: int
    """Outer iterations of EACH head fine-tune (vanilla and metagrad get the same)."""
    finetune_lr: float
    """Peak learning rate of the head fine-tunes."""
    k_min: int
    """MetaGrad inner refinement steps K ~ U{k_min..k_max} (paper: 50..500 for a 2k-step refiner)."""
    k_max: int
    """Largest K; kept at the longest evaluated step count, as the paper's 500 within its 2k."""
    stride: int
    """MetaGrad anchor stride (paper: 40 for K up to 500)."""
    eval_scenes: int
    """Held-out synthetic evaluation scenes."""
    eval_seed_offset: int
    """Their seeds are EVAL_SEED_START + eval_seed_offset + i: held out from training, from the training
    run's validation scenes (EVAL_SEED_START + i) and from the scenes the preset was tuned on."""
    image_size: int
    """Side of the synthetic evaluation scenes and the longest side of resized real scenes (pixels)."""
    num_context: int
    """Context views per evaluation scene (paper: 12)."""
    num_target: int
    """Target views per evaluation scene (paper: 4)."""
    steps: tuple[int, ...]
    """Evaluated refinement step counts (paper: 0, 200, 500, 1000, 2000)."""
    budgets: tuple[float, ...]
    """Nominal wall-clock budgets in seconds (paper: 1, 2, 5, 10, 20), multiplied by time_scale."""
    time_scale: float
    """Budget multiplier for this preset (the refinement here is ~10x shorter than the paper's)."""
    real_scenes: bool
    """Also evaluate the real scenes of the shared data folder when present."""


DEMO_PRESETS: dict[str, DemoPreset] = {
    "full": DemoPreset(
        train_preset="demo", base_iterations=None, finetune_iterations=200, finetune_lr=1e-2,
        k_min=10, k_max=100, stride=10, eval_scenes=6, eval_seed_offset=1000, image_size=48,
        num_context=6, num_target=4, steps=(0, 25, 50, 100, 200), budgets=(1.0, 2.0, 5.0, 10.0, 20.0),
        time_scale=0.1, real_scenes=True),
    "quick": DemoPreset(
        train_preset="tiny", base_iterations=6, finetune_iterations=3, finetune_lr=1e-3,
        k_min=2, k_max=6, stride=2, eval_scenes=2, eval_seed_offset=1000, image_size=32,
        num_context=4, num_target=2, steps=(0, 5, 10, 20), budgets=(1.0, 2.0, 5.0),
        time_scale=0.02, real_scenes=False),
}
"""full: `foresplat demo` (<= ~15 min on 2 cores; ~7 min on an idle machine); quick: `foresplat demo --quick`
(CI smoke run, under a minute idle). Fine-tune lr/iterations of `full` were chosen by a small sweep from the demo
base (60 it @ 1e-3: MetaGrad +0.03 dB over vanilla after 200 steps; 200 @ 3e-3: +0.04; 200 @ 1e-2: +0.13;
200 @ 3e-2: +0.13, peak +0.22), measured on held-out seeds EVAL_SEED_START + 0..5, not the ones the demo
reports (eval_seed_offset)."""


@dataclass
class DemoCommand:
    """Train a base model, fine-tune its head with vanilla and MetaGrad, and evaluate both (no data needed)."""

    quick: bool = False
    """Run the 1-2 minute smoke version (tiny model, few iterations, small scenes)."""
    from_scratch: bool = False
    """Retrain the base model even if a pretrained one ships with the package."""
    out: Path = Path("runs/demo")
    """Output folder (a sub-folder `full` or `quick` is (re)written)."""
    seed: int = 0
    """Seed of training (model init, scene draws, rule generators) and refinement."""
    real: bool = True
    """Evaluate the real scenes of the shared data folder when present (full preset only)."""
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


def _base_checkpoint(cmd: DemoCommand, preset: DemoPreset, run_dir: Path, seconds: dict) -> Path:
    from foresplat.train import train, train_preset

    shipped = ASSET_STEM.with_suffix(".safetensors").is_file() and ASSET_STEM.with_suffix(".json").is_file()
    if shipped and not cmd.from_scratch and not cmd.quick:
        print(f"using the shipped base model {ASSET_STEM} (trained with: {SHIPPED_BASE_COMMAND}); "
              "--from-scratch retrains it")
        return ASSET_STEM
    t0 = time.perf_counter()
    overrides = dict(out_dir=str(_claim(run_dir, "base")), seed=cmd.seed, val_scenes=0, progress=cmd.progress,
                     backend=cmd.backend, device=cmd.device)
    if preset.base_iterations is not None:
        overrides["iterations"] = preset.base_iterations
    from foresplat.meta import RuleConfig

    config = train_preset(preset.train_preset, rule=RuleConfig(name="vanilla"), **overrides)
    print(f"training the base model: preset {preset.train_preset!r}, {config.iterations} iterations, "
          f"{config.width}x{config.height} px, {config.num_context} context views")
    path = train(config)
    seconds["base"] = time.perf_counter() - t0
    return path


def _finetune(rule: str, base: Path, cmd: DemoCommand, preset: DemoPreset, run_dir: Path) -> Path:
    """Head-only fine-tune from `base` with `rule`; everything but the rule is identical across rules."""
    from foresplat.train import train
    from foresplat.train.finetune import head_finetune_config

    config = head_finetune_config(rule, base, preset=preset.train_preset, iterations=preset.finetune_iterations,
                                  lr=preset.finetune_lr, seed=cmd.seed, out_dir=_claim(run_dir, rule),
                                  k_min=preset.k_min, k_max=preset.k_max, stride=preset.stride, lam=0.0,
                                  progress=cmd.progress, backend=cmd.backend, device=cmd.device)
    return train(config)


def _eval_config(preset: DemoPreset, cmd: DemoCommand, **kw) -> EvalConfig:
    from foresplat.refine import RefineConfig

    return EvalConfig(steps=preset.steps, budgets=preset.budgets,
                      time_scale=preset.time_scale if cmd.time_scale is None else cmd.time_scale,
                      num_context=preset.num_context, num_target=preset.num_target,
                      refine=RefineConfig(seed=cmd.seed, backend=cmd.backend), device=cmd.device,
                      sh_degree=cmd.sh_degree, **kw)


def _synthetic_eval_sources(preset: DemoPreset):
    """Held-out synthetic scenes that look like the training scenes (same generator settings)."""
    from foresplat.data.synthetic import EVAL_SEED_START
    from foresplat.evaluate.sources import synthetic_sources
    from foresplat.train import train_preset

    syn = train_preset(preset.train_preset).synthetic
    syn = replace(syn, width=preset.image_size, height=preset.image_size,
                  num_views=max(syn.num_views, preset.num_context + preset.num_target))
    return synthetic_sources(preset.eval_scenes, syn, start_seed=EVAL_SEED_START + preset.eval_seed_offset)


def _real_sources(cmd: DemoCommand, preset: DemoPreset):
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
    return root, path_sources(root, which="evaluation", max_views=preset.num_context + preset.num_target)


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
    preset = DEMO_PRESETS["quick" if cmd.quick else "full"]
    t_all = time.perf_counter()
    run_dir = _prepare_run_dir(cmd)
    seconds: dict[str, float] = {}
    print(f"foresplat demo ({'quick' if cmd.quick else 'full'} preset): {asdict(preset)}")

    _stage("1/4 base model (vanilla)")
    base = _base_checkpoint(cmd, preset, run_dir, seconds)

    ckpts = {}
    for i, rule in enumerate(("vanilla", "metagrad")):
        _stage(f"{2 + i / 2:.1f}/4 head fine-tune with rule {rule!r}: {preset.finetune_iterations} iterations, "
               "same scenes and seed as the other rule")
        t0 = time.perf_counter()
        ckpts[rule] = _finetune(rule, base, cmd, preset, run_dir)
        seconds[f"finetune_{rule}"] = time.perf_counter() - t0

    methods = build_methods([MethodSpec(r, "checkpoint", p) for r, p in ckpts.items()], ("points", "random"))
    _stage(f"3/4 evaluation on {preset.eval_scenes} held-out synthetic scenes")
    t0 = time.perf_counter()
    syn = evaluate(_synthetic_eval_sources(preset), methods,
                   _eval_config(preset, cmd, reference="vanilla"), _claim(run_dir, "eval_synthetic"),
                   progress=cmd.progress,
                   title_notes=[f"foresplat demo, held-out synthetic scenes, seed {cmd.seed}",
                                "points baseline: the generator's exact surface points seen by the context views "
                                "(ground-truth depth, no noise: an idealised SfM)"])
    seconds["eval_synthetic"] = time.perf_counter() - t0
    claims = check_claims(syn.report)
    verdict = verdict_text(claims)

    real = None
    if preset.real_scenes and cmd.real:
        _stage("3b/4 evaluation on the real scenes of the shared data folder")
        root, sources = _real_sources(cmd, preset)
        if sources:
            t0 = time.perf_counter()
            real = evaluate(sources, methods, _eval_config(preset, cmd, reference="vanilla",
                                                           image_size=preset.image_size),
                            _claim(run_dir, "eval_real"), progress=cmd.progress,
                            title_notes=[f"real scenes from {root}, resized to {preset.image_size} px (longest side)"])
            seconds["eval_real"] = time.perf_counter() - t0

    seconds["total"] = time.perf_counter() - t_all
    _stage("4/4 results")
    print(syn.markdown)
    if real is not None:
        print(real.markdown)
    print(verdict)
    for label, outputs in (("synthetic", syn), ("real", real)):
        if outputs is not None:
            for key, path in outputs.plots.items():
                print(f"plot ({label}) {key}: {path}")
            print(f"tables ({label}): {outputs.tables['markdown']}")
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    _write_marker(run_dir, {
        "written": _read_marker(run_dir)["written"], "status": "done", "command": sys.argv, "preset": asdict(preset), "seed": cmd.seed,
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

