"""The evaluation protocol: predict (or initialise), refine, and score target views along the way.

For each scene: split into context / target views; for each method (predictor checkpoints and the
non-learned baselines "points" and "random"): initial Gaussians from the context views (timed:
`predict_seconds`), then ONE refinement run of max(steps) Adam steps on the context views
(`foresplat.refine.refine`), recording the states after every step count in `steps` and the
states needed for the wall-clock budgets (`BudgetRecorder`). Afterwards, outside all timing, the
recorded states are rendered on the target views and scored (PSNR, SSIM, LPIPS when weights are
given). Budgets count refinement time only (RefineResult.step_seconds), multiplied by time_scale.

Defaults are the paper's protocol (12 context + 4 target views, steps 0/200/500/1k/2k, budgets
+1/+2/+5/+10/+20 s); `foresplat demo` uses a CPU-scaled preset (see commands/demo.py).
A scene or method that fails is reported with its error; the others are still evaluated.
"""

from __future__ import annotations

import math
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Literal, Sequence

import torch

from foresplat.data.scene import Scene, SplitRule, split_views
from foresplat.evaluate.budget import BudgetRecorder
from foresplat.evaluate.derived import pick_reference
from foresplat.evaluate.grid import write_grid
from foresplat.evaluate.metrics import psnr, ssim
from foresplat.evaluate.plots import write_plots
from foresplat.evaluate.results import BudgetPoint, EvalReport, MethodResult, Quality, SceneResult, json_safe
from foresplat.evaluate.tables import markdown_table, write_tables
from foresplat.gaussians import Gaussians
from foresplat.io.atomic import atomic_write_json
from foresplat.refine import RefineConfig

BASELINES = ("points", "random")
"""The default non-learned initialisations."""
KNOWN_BASELINES = ("points", "points-n", "sfm-points", "random")
"""Every baseline: points (all sparse points the context views see), points-n (a random subset of them
with as many Gaussians as the first checkpoint's start: the equal-count comparison), sfm-points
(synthetic scenes: the exact points degraded like a real SfM model, foresplat.data.sfm_like), random."""


@dataclass
class EvalConfig:
    """Settings of the evaluation protocol (defaults: the paper's)."""

    steps: tuple[int, ...] = (0, 200, 500, 1000, 2000)
    """Refinement step counts at which the target views are scored (one run of max(steps) steps)."""
    budgets: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0)
    """Wall-clock refinement budgets in seconds (before time_scale)."""
    time_scale: float = 1.0
    """Multiplies every budget (e.g. 4 on a machine 4x slower than the one the budgets were set for)."""
    num_context: int = 12
    """Context (input) views per scene: predicted from and refined on."""
    num_target: int = 4
    """Held-out target views per scene: scored only."""
    split: SplitRule = "even"
    """How views are split (foresplat.data.split_views): even (interleaved), random or first."""
    split_seed: int = 0
    """Seed of the random split rule."""
    image_size: int | None = None
    """Longest image side after resizing (None: as loaded); sides are then cropped to a multiple of the
    predictors' divisor."""
    baselines: tuple[str, ...] = BASELINES
    """Non-learned initialisations evaluated alongside the checkpoints: points (sparse points, 3DGS init), random."""
    random_count: int | None = None
    """Gaussians of the random baseline (None: as many as the first checkpoint predicts, else as many as
    the sparse points, else 10000)."""
    refine: RefineConfig = field(default_factory=RefineConfig)
    """The refiner (its `steps` is replaced by max(steps); the same settings for every method)."""
    auto_background: bool = True
    """Render and refine on a scene's uniform background colour when its masks show one (RGBA scenes
    composited onto white, e.g. NeRF lego), for every method alike; as `foresplat refine`."""
    lpips_weights: Path | None = None
    """Local LPIPS weight file (see foresplat.evaluate.lpips); None: LPIPS is not computed."""
    reference: str | None = None
    """Method the derived figures compare against (None: the first name containing "vanilla")."""
    save_ply: bool = True
    """Write each scene's refined Gaussians (final step) as .ply per method."""
    sh_degree: int | None = None
    """SH degree of those .ply files (0..3; higher bands zero-padded; 3 = what the original 3DGS code loads).
    None: the Gaussians' own degree."""
    save_grids: bool = True
    """Write an image grid per scene (ground truth, step 0 and final render of each method)."""
    budget_slack: float = 0.02
    """BudgetRecorder's relative slack (states kept past each budget to absorb loop overhead)."""
    device: str = "cpu"
    """Device for prediction and refinement."""

    def validate(self) -> "EvalConfig":
        """Raises ValueError naming the field when a setting is out of range."""
        if not self.steps or any(int(k) < 0 for k in self.steps):
            raise ValueError(f"EvalConfig.steps: expected non-negative step counts, got {self.steps}")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError(f"EvalConfig.steps: expected strictly increasing step counts, got {self.steps}")
        if any(not (math.isfinite(b) and b > 0) for b in self.budgets):
            raise ValueError(f"EvalConfig.budgets: expected positive seconds, got {self.budgets}")
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise ValueError(f"EvalConfig.time_scale: expected > 0, got {self.time_scale}")
        if self.num_context < 1 or self.num_target < 1:
            raise ValueError(f"EvalConfig.num_context/num_target: expected >= 1, got {self.num_context}, "
                             f"{self.num_target}")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"EvalConfig.image_size: expected >= 8 pixels or None, got {self.image_size}")
        unknown = [b for b in self.baselines if b not in KNOWN_BASELINES]
        if unknown:
            raise ValueError(f"EvalConfig.baselines: unknown {unknown}; known: {list(KNOWN_BASELINES)}")
        if self.sh_degree is not None and self.sh_degree not in (0, 1, 2, 3):
            raise ValueError(f"EvalConfig.sh_degree: expected 0, 1, 2, 3 or None, got {self.sh_degree}")
        if self.random_count is not None and self.random_count < 1:
            raise ValueError(f"EvalConfig.random_count: expected >= 1 or None, got {self.random_count}")
        self.refine.validate()
        return self


# ---- methods --------------------------------------------------------------------------------------


@dataclass
class MethodSpec:
    """One thing to evaluate: a predictor checkpoint, or a baseline initialisation."""

    name: str
    kind: Literal["checkpoint", "checkpoint+points", "points", "points-n", "sfm-points", "random"]
    path: Path | None = None
    consistent: bool = False
    """A checkpoint's prediction keeps only its depth-consistent Gaussians (models.filters)."""
    foreground: bool = False
    """A checkpoint's prediction drops its Gaussians of the refiner's background colour (models.filters)."""

    @staticmethod
    def checkpoint(spec: str | Path) -> "MethodSpec":
        """From "NAME=PATH" or "PATH" (name: the file name without suffix), PATH optionally followed by
        "+consistent" (keep_depth_consistent on the prediction), "+foreground" (keep_foreground) and
        "+points" (the scene's sparse points added), in any order: the filters run in that order."""
        text = str(spec)
        name, sep, path = text.partition("=")
        if not sep:
            name, path = Path(text).name.split(".")[0] or text, text
        from foresplat.refine.init import split_start_suffixes

        path, words = split_start_suffixes(path)
        if not name or not path:
            raise ValueError(f"checkpoint {spec!r}: expected NAME=PATH or PATH "
                             "(PATH[+consistent][+foreground][+points])")
        return MethodSpec(name, "checkpoint+points" if "points" in words else "checkpoint", Path(path),
                          "consistent" in words, "foreground" in words)


def build_methods(checkpoints: Sequence[str | Path | MethodSpec], baselines: Sequence[str]) -> list[MethodSpec]:
    """Checkpoints first (in order), then the baselines; names must be unique."""
    methods = [c if isinstance(c, MethodSpec) else MethodSpec.checkpoint(c) for c in checkpoints]
    methods += [MethodSpec(b, b) for b in baselines]  # type: ignore[arg-type]
    names = [m.name for m in methods]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"method names must be unique, got duplicates {dup} (use NAME=PATH)")
    return methods


class _Predictors:
    """Loads each checkpoint once (and remembers a failure to report it per scene)."""

    def __init__(self, device: str):
        self.device = device
        self._cache: dict[Path, object] = {}

    def get(self, path: Path):
        if path not in self._cache:
            from foresplat.models.adapter import load_feedforward

            try:  # a Predictor checkpoint, NAME:WEIGHTS of a registered model, or a `train --model` head
                self._cache[path] = load_feedforward(path, self.device)
            except Exception as exc:  # remembered, re-raised for every scene
                self._cache[path] = exc
        model = self._cache[path]
        if isinstance(model, Exception):
            raise model
        return model


# ---- scenes -----------------------------------------------------------------------------------------


@dataclass
class SceneSource:
    """A scene to evaluate, loaded lazily so that a broken one is reported, not fatal."""

    name: str
    origin: str
    load: Callable[[], Scene]


def prepare_scene(scene: Scene, image_size: int | None, divisor: int = 1) -> Scene:
    """Resizes so the longest side is image_size (if given), then centre-crops both sides to a multiple of divisor."""
    scene.validate()
    if image_size is not None and max(scene.width, scene.height) != image_size:
        s = image_size / max(scene.width, scene.height)
        scene = scene.resized(max(1, round(scene.width * s)), max(1, round(scene.height * s)))
    w, h = scene.width - scene.width % divisor, scene.height - scene.height % divisor
    if w < divisor or h < divisor or w == 0 or h == 0:
        raise ValueError(f"{scene.name}: images {scene.width}x{scene.height} are smaller than the "
                         f"predictors' divisor {divisor}")
    if (w, h) != (scene.width, scene.height):
        scene = scene.center_cropped(w, h)
    return scene


# ---- one scene --------------------------------------------------------------------------------------


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _render_targets(g: Gaussians, target: Scene, refine_cfg: RefineConfig) -> torch.Tensor:
    """Renders g on the target cameras -> colours [C, H, W, 3] clamped to [0, 1] (no grad)."""
    from foresplat.cameras import Cameras
    from foresplat.render import render

    g = g.detach()
    cams = Cameras(target.cameras.viewmats.to(g.means), target.cameras.Ks.to(g.means), target.width, target.height)
    bg = refine_cfg.background
    bgs = None if bg is None else torch.tensor(bg, dtype=g.dtype, device=g.device).expand(cams.num, 3)
    with torch.no_grad():
        out = render(g, cams, backgrounds=bgs, backend=refine_cfg.backend)
    return out.colors.clamp(0, 1).cpu().float()


def _target_alpha(g: Gaussians, target: Scene, refine_cfg: RefineConfig) -> float:
    """Mean rendered alpha of g on the target cameras (1 = every target pixel covered)."""
    from foresplat.cameras import Cameras
    from foresplat.render import render

    g = g.detach()
    cams = Cameras(target.cameras.viewmats.to(g.means), target.cameras.Ks.to(g.means), target.width, target.height)
    with torch.no_grad():
        return float(render(g, cams, backend=refine_cfg.backend).alphas.mean())


class _Scorer:
    """PSNR / SSIM / optional LPIPS of renders against target images, means over the views."""

    def __init__(self, lpips_model=None):
        self.lpips = lpips_model
        self.lpips_error: str | None = None

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> Quality:
        lp = None
        if self.lpips is not None:
            try:
                lp = float(self.lpips(pred, target).mean())
            except ValueError as exc:  # e.g. images below the backbone's minimum size
                self.lpips_error = str(exc)
        q = Quality(float(psnr(pred, target).mean()), float(ssim(pred, target).mean()), lp)
        if not (math.isfinite(q.psnr) and math.isfinite(q.ssim)):
            raise FloatingPointError(f"non-finite metrics {q}")
        return q


def context_visible_points(context: Scene, rel_tol: float = 0.03) -> torch.Tensor:
    """Mask [P] of the sparse points a context view sees, when the scene has depth maps.

    A point is seen by a view when it projects inside the image in front of the camera and its
    depth agrees with the view's depth map at that pixel (|z - d| <= rel_tol * d, d > 0). This keeps
    the points baseline from using points that only held-out target views observed (synthetic
    scenes back-project points from every view). Without depth maps every point is kept: SfM
    points (COLMAP) are conventionally used whole.
    """
    pts = context.points
    if context.depths is None:
        return torch.ones(pts.shape[0], dtype=torch.bool)
    uv, z = context.cameras.project(pts.double().to(context.cameras.viewmats.device).to(context.cameras.viewmats.dtype))
    u, v = uv[..., 0].floor().long(), uv[..., 1].floor().long()  # [C, P] pixel indices
    inside = (z > 0) & (u >= 0) & (u < context.width) & (v >= 0) & (v < context.height)
    d = context.depths[torch.arange(context.num_views)[:, None], v.clamp(0, context.height - 1),
                       u.clamp(0, context.width - 1)].to(z.dtype)  # [C, P]
    seen = inside & (d > 0) & ((z - d).abs() <= rel_tol * d)
    return seen.any(0).cpu()


def _points_start(kind: str, context: Scene, config: EvalConfig, learned_count: int | None,
                  sh_degree: int = 0, label: str | None = None) -> Gaussians:
    """The start of a points baseline (kind points / points-n / sfm-points, see KNOWN_BASELINES)."""
    from foresplat.refine import init_from_points

    label = label or kind
    if context.points is None or context.points.shape[0] == 0:
        raise ValueError(f"scene {context.name!r} has no sparse points for the {label} start")
    if kind == "sfm-points":
        if context.depths is None or context.point_views is None:
            raise ValueError(f"scene {context.name!r}: sfm-points needs exact points with depth maps "
                             "(synthetic scenes); real scenes already have SfM points (use points)")
        from foresplat.data.sfm_like import sfm_like_points

        context = sfm_like_points(context)
        keep = torch.ones(context.points.shape[0], dtype=torch.bool)
    else:
        keep = context_visible_points(context)
    if not bool(keep.any()):
        raise ValueError(f"scene {context.name!r}: none of its sparse points is seen by a context view")
    idx = keep.nonzero()[:, 0]
    if kind == "points-n":
        if learned_count is None:
            raise ValueError("points-n: needs a checkpoint evaluated before it (its Gaussian count)")
        gen = torch.Generator().manual_seed(config.refine.seed)
        idx = idx[torch.randperm(idx.numel(), generator=gen)[:learned_count]].sort().values
    colors = None if context.point_colors is None else context.point_colors[idx]
    return init_from_points(context.points[idx], colors, sh_degree=sh_degree)


def _initialise(method: MethodSpec, context: Scene, config: EvalConfig, predictors: _Predictors,
                learned_count: int | None, background: tuple[float, float, float] | None = None) -> Gaussians:
    """The start of `method` on the context views; background: the refiner's (None = black)."""
    from foresplat.refine import init_random, scene_bounds

    if method.kind in ("checkpoint", "checkpoint+points"):
        model = predictors.get(method.path)
        with torch.no_grad():
            g = model.predict(context).detach()
        from foresplat.models.filters import DEFAULT_REL_TOL, filter_prediction

        g = filter_prediction(g, context, consistent=DEFAULT_REL_TOL if method.consistent else None,
                              foreground=method.foreground, background=background)
        if method.kind == "checkpoint":
            return g
        pts = _points_start("points", context, config, learned_count, g.sh_degree, label=method.name)
        return Gaussians.cat([g, pts.to(g.means)])
    if method.kind in ("points", "points-n", "sfm-points"):
        return _points_start(method.kind, context, config, learned_count)
    n = config.random_count or learned_count or (
        context.points.shape[0] if context.points is not None and context.points.shape[0] else 10_000)
    return init_random(scene_bounds(context), int(n), seed=config.refine.seed)


def evaluate_scene(scene: Scene, methods: Sequence[MethodSpec], config: EvalConfig, *,
                   predictors: _Predictors | None = None, scorer: _Scorer | None = None,
                   out_dir: Path | None = None, on_method: Callable[[str], None] | None = None) -> SceneResult:
    """Runs the protocol on one (prepared) scene; method failures are recorded in their MethodResult."""
    predictors = predictors or _Predictors(config.device)
    scorer = scorer or _Scorer()
    split = split_views(scene, config.num_context, config.num_target, config.split, config.split_seed)
    context = split.context.to(config.device)
    target = split.target
    result = SceneResult(scene.name, num_context=config.num_context, num_target=config.num_target,
                         width=scene.width, height=scene.height)
    max_steps = int(max(config.steps))
    refine_cfg = replace(config.refine, steps=max_steps)
    if refine_cfg.background is None and config.auto_background:  # as `foresplat refine` does
        from foresplat.refine.init import scene_background

        bg = scene_background(context)
        if bg is not None:
            refine_cfg = replace(refine_cfg, background=bg)
    record = sorted({0, *map(int, config.steps), max_steps})
    budgets = [b * config.time_scale for b in config.budgets]
    columns: list[tuple[str, torch.Tensor]] = [("ground truth", target.images.float())]
    learned_count: int | None = None
    for method in methods:
        if on_method is not None:
            on_method(method.name)
        mr = MethodResult(method.name, scene.name)
        result.methods.append(mr)
        try:
            t0 = time.perf_counter()
            g0 = _initialise(method, context, config, predictors, learned_count, refine_cfg.background)
            mr.predict_seconds = time.perf_counter() - t0
            g0 = g0.to(config.device).detach()
            if method.kind == "checkpoint" and learned_count is None:
                learned_count = g0.num
            recorder = BudgetRecorder(budgets, slack_fraction=config.budget_slack)
            with warnings.catch_warnings():
                # context views that see no Gaussian are expected for poor initialisations (random)
                warnings.filterwarnings("ignore", message=r"refine: context views", category=RuntimeWarning)
                recorder.start()
                run = _refine(g0, context, refine_cfg, record, recorder)
            mr.num_gaussians = run.gaussians.num
            mr.refine_seconds = float(sum(run.step_seconds))
            mr.final_loss = run.losses[-1] if run.losses else None
            mr.target_alpha = _target_alpha(g0, target, refine_cfg)
            renders: dict[int, torch.Tensor] = {}
            for k in config.steps:
                renders[int(k)] = _render_targets(run.recorded[int(k)], target, refine_cfg)
                mr.steps[int(k)] = scorer(renders[int(k)], target.images)
            for (hit, state, exact), nominal in zip(recorder.select(run.step_seconds, run.recorded), config.budgets):
                q = mr.steps.get(hit.step) or scorer(_render_targets(state, target, refine_cfg), target.images)
                mr.budgets.append(BudgetPoint(budget=hit.budget, nominal=float(nominal), step=hit.step,
                                              seconds=hit.seconds, exhausted=hit.exhausted, quality=q,
                                              exact=exact))
            if config.save_ply and out_dir is not None:
                from foresplat.io import write_ply

                path = out_dir / "ply" / _safe(scene.name) / f"{_safe(method.name)}.ply"
                write_ply(path, run.gaussians.detach().to("cpu"), sh_degree=config.sh_degree)
                mr.ply = str(path)
            columns += [(f"{method.name} 0", renders[min(renders)]),
                        (f"{method.name} {max_steps}", renders[max(renders)])]
        except Exception as exc:  # reported per method; the other methods still run
            mr.error = _error(exc)
            mr.steps, mr.budgets = {}, []
            if not isinstance(exc, (ValueError, FileNotFoundError, FloatingPointError)):
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                mr.error += f" (at {Path(frame.filename).name}:{frame.lineno})"
    if config.save_grids and out_dir is not None and len(columns) > 1:
        result.grid = str(write_grid(out_dir / "grids" / f"{_safe(scene.name)}.png", columns))
    return result


def _refine(g0: Gaussians, context: Scene, cfg: RefineConfig, record: list[int], recorder: BudgetRecorder):
    from foresplat.refine import refine

    return refine(g0, context, cfg, record_steps=record, callback=recorder)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "scene"


# ---- many scenes --------------------------------------------------------------------------------------


@dataclass
class EvalOutputs:
    """What `evaluate` wrote: the report and the paths of the tables and plots."""

    report: EvalReport
    tables: dict[str, Path]
    plots: dict[str, Path]
    markdown: str


def _lpips_setup(config: EvalConfig) -> tuple[object | None, str]:
    if config.lpips_weights is None:
        return None, "LPIPS: not computed (no weights)"
    from foresplat.evaluate.lpips import load_lpips

    try:
        model = load_lpips(config.lpips_weights, device=config.device)
    except (FileNotFoundError, ValueError) as exc:
        return None, f"LPIPS: not computed (no weights: {exc})"
    return model, f"LPIPS: {model.arch.name} backbone, weights from {config.lpips_weights}"


def evaluate(sources: Iterable[SceneSource], methods: Sequence[MethodSpec], config: EvalConfig,
             out_dir: str | Path, *, progress: bool = True, title_notes: Sequence[str] = ()) -> EvalOutputs:
    """Runs the protocol on every scene source and writes tables, plots, grids and .ply files to out_dir.

    A source that fails to load or prepare is recorded as a scene error; the others still run.
    """
    from tqdm.auto import tqdm

    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [m.name for m in methods]
    if not names:
        raise ValueError("evaluate: no methods (give checkpoints and/or baselines)")
    reference = pick_reference(names, config.reference)
    lpips_model, lpips_note = _lpips_setup(config)
    predictors = _Predictors(config.device)
    scorer = _Scorer(lpips_model)
    divisor = 1
    for m in methods:
        if m.kind == "checkpoint":
            try:
                divisor = math.lcm(divisor, int(predictors.get(m.path).divisor))
            except Exception:
                pass  # the load error is reported on every scene for this method
    cfg_dict = json_safe(_config_dict(config))
    report = EvalReport(methods=names, steps=[int(k) for k in config.steps], budgets=[float(b) for b in config.budgets],
                        time_scale=float(config.time_scale), reference=reference, lpips_note=lpips_note,
                        notes=list(title_notes), config=cfg_dict)
    atomic_write_json(out / "eval_config.json",
                      {"config": cfg_dict, "methods": [json_safe(_method_dict(m)) for m in methods]})
    sources = list(sources)
    bar = tqdm(total=len(sources) * len(methods), desc="eval", unit="run", disable=not progress, leave=False)
    try:
        for src in sources:
            bar.set_postfix_str(src.name)
            try:
                scene = prepare_scene(src.load(), config.image_size, divisor)
            except Exception as exc:  # broken scene: reported, the others go on
                report.scenes.append(SceneResult(src.name, source=src.origin, error=_error(exc)))
                bar.update(len(methods))
                continue
            try:
                sr = evaluate_scene(scene, methods, config, predictors=predictors, scorer=scorer, out_dir=out,
                                    on_method=lambda n: bar.set_postfix_str(f"{src.name} {n}"))
            except Exception as exc:  # e.g. too few views for the split
                sr = SceneResult(src.name, error=_error(exc))
            sr.source = src.origin
            report.scenes.append(sr)
            bar.update(len(methods))
    finally:
        bar.close()
    approx = [f"{s.scene}/{m.method} +{b.nominal:g} s" for s in report.scenes for m in s.methods for b in m.budgets
              if not b.exact]
    if approx:
        report.notes.append(f"{len(approx)} budget point(s) show the nearest earlier kept state, not the exact "
                            f"last step within the budget (marked ~): {', '.join(approx)}")
    if scorer.lpips_error:
        report.notes.append(f"LPIPS skipped on some scenes: {scorer.lpips_error}")
    if reference is None:
        report.notes.append("no method named *vanilla*: derived figures need --reference NAME")
    tables = write_tables(report, out)
    plots = write_plots(report, out)
    return EvalOutputs(report, tables, plots, markdown_table(report))


def _config_dict(config: EvalConfig) -> dict:
    d = asdict(config)
    d["lpips_weights"] = None if config.lpips_weights is None else str(config.lpips_weights)
    return d


def _method_dict(m: MethodSpec) -> dict:
    return {"name": m.name, "kind": m.kind, "path": None if m.path is None else str(m.path),
            "consistent": m.consistent, "foreground": m.foreground}
