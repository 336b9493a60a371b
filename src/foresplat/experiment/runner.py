"""The claim experiment's runner: base -> per seed two matched head fine-tunes -> per-scene evaluation.

Output folder (every piece written atomically; a rerun with resume skips what is finished):
    claim.json                                  config, status, timings, verdicts (written_by marker)
    base/                                       the trained base (base="train" only)
    finetune/seed<S>/<rule>/model.*             each fine-tune (foresplat.train run folders; an
                                                unfinished one continues from its last checkpoint)
    cells/<set>/seed<S>/<rule>/<scene>.json     one evaluation (MethodResult) of one head on one scene
    results/<set>/                              claim.md/.csv/.json, psnr_vs_steps_ci.png (experiment.report)
                                                and results.md/.csv/.json + plots of the pooled means
                                                (foresplat.evaluate.tables / plots)
<set> is "synthetic" (unseen synthetic scenes) or "real" (the catalog's evaluation scenes).
Every head is refined with the same refiner seed on the same views of a scene, so the two heads of a
seed are paired per scene.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from foresplat.experiment.config import ClaimConfig, eval_seed_start
from foresplat.io.atomic import atomic_write_json

MARKER = "foresplat experiment claim"
RESULT_NEUTRAL = ("rule_workers",)
"""ClaimConfig fields a resume may change: they do not change any stored result."""
EVALUATION_SET = ("eval_scenes", "real_scenes")
"""ClaimConfig fields that choose which scenes are evaluated, never how: a resume may change them. The
fine-tunes do not read them and a stored cell is one (seed, rule, scene), the same whatever else is
evaluated, so `--resume --eval-scenes 32` on a 16-scene run evaluates only the 16 new scenes, and
`--resume --real True` only the real ones."""

ADDED_FIELDS = ("synthetic_pool", "anchor_views", "treatment", "finetune_backbone", "head_outputs")
"""ClaimConfig fields newer than some stored runs: a record without them ran with their defaults."""
TREATMENT_ONLY = ("treatment", "lam", "k_min", "k_max", "stride", "anchor_views")
"""ClaimConfig fields only the treatment rule reads (foresplat.meta.vanilla reads the zero-step views and the
loss weights): runs that differ only in these share their vanilla arm, so `control_from` can copy it."""
CONTROL_FILES = ("model.safetensors", "model.json", "config.yaml", "metrics.jsonl", "summary.json")
"""What a copied vanilla fine-tune keeps (summary.json last: its presence marks the copy finished)."""


def rules(config: ClaimConfig) -> tuple[str, str]:
    """The two arms: the control (vanilla) first, the treatment (config.treatment, normally metagrad) second."""
    return ("vanilla", config.treatment)


@dataclass
class ClaimRun:
    """What a run produced: per scene set the analysis (experiment.report.ClaimAnalysis) and paths."""

    out_dir: Path
    analyses: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "scene"


def prepare_out_dir(out: Path, config: ClaimConfig, resume: bool, record_changes: bool = True) -> dict:
    """Creates `out` or, with resume, reopens a run of the same config; returns the claim.json record.

    Refuses a non-empty folder without resume, a folder not written by this command, and a resume
    with a different config (its finished pieces would be mixed with the new ones) other than in
    RESULT_NEUTRAL and EVALUATION_SET; a changed EVALUATION_SET is written to the record unless
    record_changes is False (--report-only writes nothing there)."""
    from foresplat.io.outputs import check_output_dir

    check_output_dir(out, option="--out")
    record_path = out / "claim.json"
    cfg = _config_dict(config)
    if out.is_dir() and any(out.iterdir()):
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict) or record.get("written_by") != MARKER:
            raise FileExistsError(f"--out {out}: not empty and not a claim experiment folder; choose another")
        if not resume:
            raise FileExistsError(f"--out {out}: holds an earlier claim run; pass --resume to continue it "
                                  "or choose another folder")
        old = _stored_config(record, config)  # a field added after the run started counts as its default
        diff = sorted(k for k in cfg if k not in RESULT_NEUTRAL + EVALUATION_SET and old.get(k) != cfg[k])
        if diff:
            raise ValueError(f"--resume: {out} was run with another config (differs in {diff}); "
                             "use the same preset and options, or another --out")
        changed = {k: cfg[k] for k in EVALUATION_SET if old.get(k) != cfg[k]}
        if changed and record_changes:  # the record says what its verdicts now cover
            what = ", ".join(f"{k} {old.get(k)} -> {v}" for k, v in changed.items())
            print(f"--resume: evaluation set changed ({what}); stored cells are kept, missing ones are evaluated",
                  flush=True)
            record["config"] = {**(record.get("config") or {}), **changed}
            atomic_write_json(record_path, record)
        return record
    out.mkdir(parents=True, exist_ok=True)
    record = {"written_by": MARKER, "config": cfg, "status": "running", "command": sys.argv}
    atomic_write_json(record_path, record)
    return record


def _stored_config(record: dict, config: ClaimConfig) -> dict:
    """The config of a stored record, with ADDED_FIELDS it lacks at their defaults, less RESULT_NEUTRAL."""
    defaults = _config_dict(ClaimConfig(name=config.name))
    return {k: v for k, v in {**{k: defaults[k] for k in ADDED_FIELDS}, **(record.get("config") or {})}.items()
            if k not in RESULT_NEUTRAL}


def check_control(config: ClaimConfig, source: Path) -> None:
    """Raises unless `source` is a claim run whose vanilla arm is this config's: its config may differ only
    in TREATMENT_ONLY (and RESULT_NEUTRAL, EVALUATION_SET) fields."""
    try:
        record = json.loads((source / "claim.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"--control-from {source}: no readable claim.json there ({exc})") from None
    if not isinstance(record, dict) or record.get("written_by") != MARKER:
        raise ValueError(f"--control-from {source}: not a claim experiment folder")
    ignored = RESULT_NEUTRAL + TREATMENT_ONLY + EVALUATION_SET
    old = {k: v for k, v in _stored_config(record, config).items() if k not in ignored}
    new = {k: v for k, v in _config_dict(config).items() if k not in ignored}
    if old != new:
        diff = sorted(k for k in new if old.get(k) != new[k])
        raise ValueError(f"--control-from {source}: its vanilla arm was run with another config (differs in "
                         f"{diff}); only {list(TREATMENT_ONLY)} may differ")


def import_control(config: ClaimConfig, out: Path, source: Path) -> int:
    """Copies the vanilla arm of the claim run in `source` (its finished vanilla fine-tunes and their
    evaluation cells) into `out` wherever `out` lacks it; returns the number of pieces copied.

    The vanilla arm does not depend on TREATMENT_ONLY fields, so a study that varies only those (lambda,
    K, stride, anchor views) evaluates one control once (check_control decides whether it may)."""
    import shutil

    from foresplat.io.atomic import atomic_write

    check_control(config, source)
    copied = 0
    for seed in config.seeds:
        src, dst = finetune_dir(source, seed, "vanilla"), finetune_dir(out, seed, "vanilla")
        if _finished(src) and not _finished(dst):
            dst.mkdir(parents=True, exist_ok=True)
            for name in CONTROL_FILES:
                if (src / name).is_file():
                    with atomic_write(dst / name) as tmp:
                        shutil.copyfile(src / name, tmp)
            copied += 1
        for cell in sorted((source / "cells").glob(f"*/seed{seed}/vanilla/*.json")):
            target = out / cell.relative_to(source)
            if read_cell(cell) is not None and read_cell(target) is None:
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(target) as tmp:
                    shutil.copyfile(cell, tmp)
                copied += 1
    return copied


def _config_dict(config: ClaimConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))  # tuples -> lists, as read back from JSON


def base_checkpoint(config: ClaimConfig, out: Path, progress: bool) -> Path:
    """The base predictor's checkpoint: the shipped one, a path, or one trained into out/base."""
    from foresplat.models.pretrained import resolve_checkpoint

    if config.base != "train":
        path = resolve_checkpoint(config.base)
        if not path.with_suffix(".json").is_file():
            raise FileNotFoundError(f"--base-ckpt {path}: no checkpoint {path.with_suffix('.json')}")
        return path
    from foresplat.meta import RuleConfig
    from foresplat.train import train, train_preset

    if _finished(out / "base"):
        return out / "base" / "model"
    overrides = dict(out_dir=str(out / "base"), seed=0, val_scenes=0, progress=progress, resume="auto",
                     backend=config.backend, device=config.device)
    if config.base_iterations is not None:
        overrides["iterations"] = config.base_iterations
    return train(train_preset(config.train_preset, rule=RuleConfig(name="vanilla"), **overrides))


def finetune_config(config: ClaimConfig, rule: str, base: Path, seed: int, out_dir: Path, progress: bool):
    """The TrainConfig of one fine-tune (train.finetune.rule_finetune_config with this experiment's sizes)."""
    from foresplat.train import train_preset
    from foresplat.train.finetune import rule_finetune_config

    preset = train_preset(config.train_preset)
    overrides: dict = dict(progress=progress, backend=config.backend, device=config.device, resume="auto",
                           rule_workers=config.rule_workers, keep_checkpoints=2)  # a resume needs the newest
    syn = preset.synthetic
    if config.train_size is not None:
        overrides.update(width=config.train_size, height=config.train_size)
        syn = replace(syn, width=config.train_size, height=config.train_size)
    ctx = config.train_context or preset.num_context
    tgt = config.train_target if config.train_target is not None else preset.num_target
    overrides.update(num_context=ctx, num_target=tgt, synthetic=replace(syn, num_views=max(syn.num_views, ctx + tgt)))
    if config.synthetic_only:
        overrides["datasets"] = ()
    if config.synthetic_pool is not None:
        overrides["synthetic_pool"] = config.synthetic_pool
    if config.head_outputs:
        overrides["head_outputs"] = tuple(config.head_outputs)
    rule_overrides: dict = {"refine": replace(preset.rule.refine, steps=config.refine_horizon)}
    if config.anchor_views is not None:
        rule_overrides["anchor_views"] = config.anchor_views
    return rule_finetune_config(rule, base, preset=config.train_preset, iterations=config.finetune_iterations,
                                lr=config.finetune_lr, seed=seed, out_dir=out_dir, k_min=config.k_min,
                                k_max=config.k_max, stride=config.stride, lam=config.lam,
                                train_backbone=config.finetune_backbone, rule_overrides=rule_overrides, **overrides)


def _finished(run_dir: Path) -> bool:
    """Whether a foresplat.train run folder holds its final model (model.safetensors and summary.json)."""
    return (run_dir / "model.safetensors").is_file() and (run_dir / "summary.json").is_file()


def finetune_dir(out: Path, seed: int, rule: str) -> Path:
    return out / "finetune" / f"seed{seed}" / rule


def run_finetunes(config: ClaimConfig, base: Path, out: Path, progress: bool, seconds: dict) -> dict[tuple[int, str], Path]:
    """Every (seed, rule) fine-tune, finished ones skipped; returns their checkpoint stems."""
    from foresplat.train import train

    ckpts = {}
    for seed in config.seeds:
        for rule in rules(config):
            d = finetune_dir(out, seed, rule)
            if _finished(d):
                print(f"fine-tune seed {seed} {rule}: done earlier ({d})", flush=True)
                ckpts[(seed, rule)] = d / "model"
                continue
            print(f"fine-tune seed {seed} {rule}: {config.finetune_iterations} iterations -> {d}", flush=True)
            t0 = time.perf_counter()
            ckpts[(seed, rule)] = train(finetune_config(config, rule, base, seed, d, progress))
            seconds[f"finetune_seed{seed}_{rule}"] = time.perf_counter() - t0
    return ckpts


def eval_config(config: ClaimConfig, real: bool):
    """The EvalConfig of every cell (same refiner seed for every head: paired per scene)."""
    from foresplat.evaluate import EvalConfig
    from foresplat.refine import RefineConfig

    return EvalConfig(steps=config.steps, budgets=config.budgets, time_scale=config.time_scale,
                      num_context=config.num_context, num_target=config.num_target, baselines=(),
                      image_size=config.image_size if real else None,
                      refine=RefineConfig(seed=0, backend=config.backend), device=config.device,
                      save_ply=False, save_grids=False).validate()


def scene_sources(config: ClaimConfig, which: str, data: Path | None = None):
    """The scene sources of set `which` ("synthetic" or "real"; [] when no real data is found)."""
    from foresplat.evaluate import find_shared_data, path_sources, synthetic_sources
    from foresplat.train import train_preset

    if which == "synthetic":
        syn = train_preset(config.train_preset).synthetic
        syn = replace(syn, width=config.image_size, height=config.image_size,
                      num_views=max(syn.num_views, config.num_context + config.num_target))
        return synthetic_sources(config.eval_scenes, syn, start_seed=eval_seed_start(config))
    root = data if data is not None else find_shared_data()
    if root is None:
        print("real scenes: no shared data folder found (set FORESPLAT_DATA or --data): skipped", flush=True)
        return []
    return path_sources(root, which="evaluation", max_views=config.num_context + config.num_target)


def _min_scenes(config: ClaimConfig, which: str, sources) -> int:
    """Scenes a verdict needs: config.min_eval_scenes synthetic ones, or every real evaluation scene found."""
    return config.min_eval_scenes if which == "synthetic" else len(sources)


def cell_path(out: Path, which: str, seed: int, rule: str, scene: str) -> Path:
    return out / "cells" / which / f"seed{seed}" / rule / f"{_safe(scene)}.json"


def read_cell(path: Path):
    """The MethodResult stored at `path` (None when missing or unreadable: it is recomputed)."""
    from foresplat.evaluate.results import EvalReport

    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        report = EvalReport.from_dict({"methods": [d["method"]], "steps": [], "budgets": [], "time_scale": 1.0,
                                       "scenes": [{"scene": d["scene"], "methods": [d]}]})
        return report.scenes[0].methods[0]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def evaluate_cells(config: ClaimConfig, which: str, sources, ckpts: dict, out: Path, progress: bool,
                   compute: bool = True) -> dict:
    """Evaluates every (scene, seed, rule) cell not stored yet; returns {(seed, rule, scene): MethodResult}
    and {scene: error} of scenes that failed to load under key "__errors__". compute=False only reads
    the stored cells (a missing one stays missing and its scene is left out of the analysis)."""
    from tqdm.auto import tqdm

    from foresplat.evaluate.protocol import MethodSpec, _Predictors, _Scorer, evaluate_scene, prepare_scene
    from foresplat.evaluate.results import json_safe

    cfg = eval_config(config, which == "real")
    predictors, scorer = _Predictors(config.device), _Scorer()
    divisor = math.lcm(*(int(predictors.get(p).divisor) for p in ckpts.values()))
    cells: dict = {}
    errors: dict[str, str] = {}
    total = len(sources) * len(ckpts)
    bar = tqdm(total=total, desc=f"eval {which}", unit="cell", disable=not progress, dynamic_ncols=True)
    try:
        for src in sources:
            todo = []
            for (seed, rule), ckpt in ckpts.items():
                mr = read_cell(cell_path(out, which, seed, rule, src.name))
                if mr is not None:
                    cells[(seed, rule, src.name)] = mr
                    bar.update(1)
                else:
                    todo.append((seed, rule, ckpt))
            if not todo or not compute:
                bar.update(0 if compute else len(todo))
                continue
            try:
                scene = prepare_scene(src.load(), cfg.image_size, divisor)
            except Exception as exc:  # a broken scene is reported, the others go on (and it is retried on rerun)
                errors[src.name] = f"{type(exc).__name__}: {exc}"
                bar.update(len(todo))
                continue
            for seed, rule, ckpt in todo:
                bar.set_postfix_str(f"{src.name} seed {seed} {rule}")
                sr = evaluate_scene(scene, [MethodSpec(rule, "checkpoint", ckpt)], cfg, predictors=predictors,
                                    scorer=scorer)
                mr = sr.methods[0]
                mr.scene = src.name
                atomic_write_json(cell_path(out, which, seed, rule, src.name), json_safe(asdict(mr)))
                cells[(seed, rule, src.name)] = mr
                bar.update(1)
    finally:
        bar.close()
    cells["__errors__"] = errors
    return cells


def _existing_finetunes(config: ClaimConfig, out: Path) -> dict[tuple[int, str], Path]:
    ckpts = {}
    for seed in config.seeds:
        for rule in rules(config):
            d = finetune_dir(out, seed, rule)
            if not _finished(d):
                raise FileNotFoundError(f"--report-only: the fine-tune {d} is not finished yet; nothing to report")
            ckpts[(seed, rule)] = d / "model"
    return ckpts


def run_claim(config: ClaimConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True,
              data: Path | None = None, report_only: bool = False, control_from: Path | None = None) -> ClaimRun:
    """Runs (or resumes) the whole experiment and writes its results; prints the verdicts.

    report_only: compute nothing; analyse the cells already stored in an earlier (or still running)
    run of the same config, over the scenes whose every cell is finished.
    control_from: an earlier claim run whose config differs only in TREATMENT_ONLY fields; its vanilla
    fine-tunes and cells are copied (import_control) instead of recomputed."""
    config.validate()
    out = Path(out_dir)
    if report_only:
        if not (out / "claim.json").is_file():
            raise FileNotFoundError(f"--report-only: {out / 'claim.json'} does not exist (no claim run there)")
        return _report(config, out, progress, data)
    if control_from is not None:
        check_control(config, Path(control_from))  # before anything is written
    record = prepare_out_dir(out, config, resume)
    if control_from is not None:
        n = import_control(config, out, Path(control_from))
        print(f"control arm: {n} vanilla fine-tunes and cells copied from {control_from}", flush=True)
        record["control_from"] = sorted({*record.get("control_from", []), str(control_from)})
        atomic_write_json(out / "claim.json", record)
    run = ClaimRun(out)
    t_all = time.perf_counter()
    print(f"foresplat experiment claim, preset {config.name!r}: {len(config.seeds)} seeds x 2 rules, "
          f"{config.finetune_iterations} fine-tune iterations each, {config.eval_scenes} synthetic scenes"
          f"{' + real scenes' if config.real_scenes else ''}, steps {list(config.steps)}", flush=True)
    t0 = time.perf_counter()
    base = base_checkpoint(config, out, progress)
    run.seconds["base"] = time.perf_counter() - t0
    print(f"base predictor: {base}", flush=True)
    ckpts = run_finetunes(config, base, out, progress, run.seconds)
    sets = ["synthetic"] + (["real"] if config.real_scenes else [])
    for which in sets:
        sources = scene_sources(config, which, data)
        if not sources:
            continue
        t0 = time.perf_counter()
        cells = evaluate_cells(config, which, sources, ckpts, out, progress)
        run.seconds[f"eval_{which}"] = time.perf_counter() - t0
        run.analyses[which] = _analyse_and_write(config, which, sources, [s.name for s in sources], cells, out)
    run.seconds["total"] = time.perf_counter() - t_all
    record.update({"status": "done", "base_checkpoint": str(base),
                   "checkpoints": {f"seed{s}/{r}": str(p) for (s, r), p in ckpts.items()},
                   "seconds_this_invocation": run.seconds,
                   "verdicts": {k: a.verdict for k, a in run.analyses.items()}})
    atomic_write_json(out / "claim.json", record)
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in run.seconds.items()), flush=True)
    return run


def _report(config: ClaimConfig, out: Path, progress: bool, data: Path | None) -> ClaimRun:
    prepare_out_dir(out, config, resume=True, record_changes=False)  # the config of the run that wrote the cells
    ckpts = _existing_finetunes(config, out)
    run = ClaimRun(out)
    for which in ["synthetic"] + (["real"] if config.real_scenes else []):
        sources = scene_sources(config, which, data)
        if not sources:
            continue
        cells = evaluate_cells(config, which, sources, ckpts, out, progress, compute=False)
        done = [s.name for s in sources if all((seed, rule, s.name) in cells for seed, rule in ckpts)]
        run.analyses[which] = _analyse_and_write(config, which, sources, done, cells, out)
    return run


def _analyse_and_write(config: ClaimConfig, which: str, sources, names: list[str], cells: dict, out: Path):
    """analyse() over `names` (a "Partial" note when they are not all of `sources`), write and print it."""
    from foresplat.experiment.report import analyse, write_results

    analysis = analyse(config, which, names, cells, _min_scenes(config, which, sources))
    try:
        copied = json.loads((out / "claim.json").read_text(encoding="utf-8")).get("control_from")
    except (OSError, ValueError, AttributeError):
        copied = None
    if copied:
        analysis.markdown += (f"\nThe vanilla cells were copied from {', '.join(copied)} (--control-from): the step "
                              "columns are paired exactly, but the wall-clock budget columns compare evaluations "
                              "run at different times, under whatever load the machine had then.\n")
    if len(names) < len(sources):
        analysis.markdown += (f"\nPartial: {len(names)} of {len(sources)} {which} scenes have every cell "
                              "finished; the others are not included.\n")
    paths = write_results(analysis, out / "results" / which)
    print(analysis.markdown, flush=True)
    for key, path in paths.items():
        print(f"{which} {key}: {path}", flush=True)
    return analysis
