"""Distillation: train a small student predictor from a trained teacher predictor.

    student = distill(DistillConfig(teacher="runs/demo/model", student="half", out_dir="runs/distill",
                                    train=train_preset("demo")))

The student is trained by foresplat.train's own loop (checkpoints, `resume="auto"`, metrics.jsonl,
validation) with `DistillRule` in place of a meta rule. Per scene, with G_T = teacher(context views)
(no gradient) and G_S the student's prediction (the same N pixel-aligned Gaussians):

    loss = depth  * mean|log z_S - log z_T|   (z: camera depth of each Gaussian in its own view)
         + depth  * mean(|mu_S - mu_T| / z_T)  (position, relative to depth)
         + opacity * mean|sigmoid(o_S) - sigmoid(o_T)|
         + scale  * mean|log s_S - log s_T|
         + colour * mean|sh_S - sh_T|
         + render * L(render(G_S), render(G_T))   on context + target views (L: MSE + SSIM, foresplat.meta.loss)
         + gt     * L(render(G_S), images)         the ground-truth views

The teacher may be any feed-forward model foresplat loads (a predictor checkpoint, NAME:WEIGHTS of an
adapter model, an adapter head checkpoint); when its Gaussians are not laid out like the student's
(count, SH degree), distil from renders only (the per-Gaussian weights at 0).

Optionally the student's head is then fine-tuned with the vanilla and the MetaGrad rule (as
`foresplat demo` does for its base model).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Annotated

import torch
import tyro

from foresplat.cameras import Cameras
from foresplat.data.scene import SceneSplit
from foresplat.gaussians import Gaussians
from foresplat.meta import RuleConfig, RuleOutput
from foresplat.meta.loss import image_loss, view_set
from foresplat.models import PREDICTOR_PRESETS, Predictor, PredictorConfig
from foresplat.train.config import TrainConfig, train_preset

_WIDTH_FIELDS = ("match_channels", "unet_channels", "out_channels")
"""Backbone config fields scaled by `scaled_config` (plus the encoder_channels tuple)."""


def scaled_config(config: PredictorConfig, ratio: float) -> PredictorConfig:
    """The same architecture with every channel width multiplied by `ratio` (rounded, >= 4);
    depth candidates, source views, strides and the SH degree stay."""
    w = lambda c: max(4, int(round(c * ratio)))  # noqa: E731
    bb = config.backbone
    changes = {f: w(getattr(bb, f)) for f in _WIDTH_FIELDS if hasattr(bb, f)}
    if hasattr(bb, "encoder_channels"):
        changes["encoder_channels"] = tuple(w(c) for c in bb.encoder_channels)
    head = replace(config.head, hidden_channels=w(config.head.hidden_channels))
    return PredictorConfig(backbone=replace(bb, **changes), head=head).validate()


def student_config(teacher: PredictorConfig | None, student: str, max_ratio: float = 0.5,
                   teacher_parameters: int | None = None) -> PredictorConfig:
    """A preset name (edge-t, edge-s, ...) or "half": the teacher's architecture narrowed until it has
    at most `max_ratio` of the teacher's parameters. ValueError when the student is not smaller enough.
    teacher None (an adapter model): give teacher_parameters; "half" is then unavailable."""
    if teacher is None and (student == "half" or teacher_parameters is None):
        raise ValueError("DistillConfig.student: 'half' narrows a foresplat predictor; for an adapter teacher "
                         "choose a preset (edge-t, edge-s, ...)")
    n_teacher = teacher_parameters if teacher_parameters is not None else Predictor(teacher).num_parameters()
    if student == "half":
        for r in [x / 100 for x in range(80, 9, -2)]:
            cfg = scaled_config(teacher, r)
            if Predictor(cfg).num_parameters() <= max_ratio * n_teacher:
                return cfg
        raise ValueError(f"DistillConfig.student: cannot narrow the teacher to <= {max_ratio:.0%} of its parameters")
    if student not in PREDICTOR_PRESETS:
        raise ValueError(f"DistillConfig.student: expected 'half' or one of {sorted(PREDICTOR_PRESETS)}, got {student!r}")
    cfg = PredictorConfig.preset(student)
    if teacher is not None and cfg.backbone.prediction_stride != teacher.backbone.prediction_stride:
        raise ValueError(f"DistillConfig.student: {student} predicts at stride {cfg.backbone.prediction_stride}, "
                         f"the teacher at {teacher.backbone.prediction_stride}; they must match (one Gaussian each)")
    n = Predictor(cfg).num_parameters()
    if n > max_ratio * n_teacher:
        raise ValueError(f"DistillConfig.student: {student} has {n:,} parameters, more than {max_ratio:.0%} of the "
                         f"teacher's {n_teacher:,} (use a smaller preset or 'half')")
    return cfg


@dataclass
class DistillWeights:
    """Weights of the distillation loss terms (module docstring)."""

    depth: float = 1.0
    """Per-Gaussian log-depth and relative position."""
    opacity: float = 0.5
    """Per-Gaussian opacity (after the sigmoid)."""
    scale: float = 0.2
    """Per-Gaussian log-scales."""
    colour: float = 0.5
    """Per-Gaussian SH coefficients."""
    render: float = 1.0
    """Student renders vs teacher renders (context + target views)."""
    gt: float = 0.5
    """Student renders vs the ground-truth images (context + target views)."""

    def validate(self) -> "DistillWeights":
        """Raises ValueError naming the weight when one is negative or all are zero."""
        for f in fields(self):
            if not getattr(self, f.name) >= 0:
                raise ValueError(f"DistillWeights.{f.name}: expected >= 0, got {getattr(self, f.name)}")
        if not any(getattr(self, f.name) for f in fields(self)):
            raise ValueError("DistillWeights: every weight is 0; nothing to train")
        return self


def camera_depths(g: Gaussians, viewmats: torch.Tensor) -> torch.Tensor:
    """Unbatched pixel-aligned g (N = V M, view-major) and viewmats [V,4,4] -> z of each mean in its view [V, M]."""
    V = viewmats.shape[0]
    mu = g.means.reshape(V, -1, 3)  # [V, M, 3]
    R, t = viewmats[:, :3, :3].to(mu), viewmats[:, :3, 3].to(mu)  # [V, 3, 3], [V, 3]
    return (mu @ R.transpose(-1, -2) + t[:, None])[..., 2]


GAUSSIAN_TERMS = ("depth", "opacity", "scale", "colour")
"""The per-Gaussian loss terms: they need the teacher's and the student's Gaussians pixel-aligned alike."""


class DistillRule:
    """A training rule (foresplat.meta interface) whose target is a frozen teacher's prediction.

    teacher: anything with `predict(scene) -> Gaussians` that is an nn.Module (a Predictor or a
    foresplat.models adapter). With a teacher whose Gaussians are not laid out like the student's
    (another count or SH degree), set the per-Gaussian weights to 0 (render-only distillation)."""

    def __init__(self, teacher: torch.nn.Module, weights: DistillWeights | None = None, render: RuleConfig | None = None):
        self.teacher = teacher.eval().requires_grad_(False)
        self.weights = (weights or DistillWeights()).validate()
        self.render_config = render or RuleConfig()

    @torch.no_grad()
    def _teacher(self, split: SceneSplit, like: Gaussians) -> Gaussians:
        dev = like.means.device
        if next(self.teacher.parameters()).device != dev:
            self.teacher.to(dev)
        return self.teacher.predict(split.context).to(like.means.dtype)

    def __call__(self, g0: Gaussians, split: SceneSplit, generator: torch.Generator) -> RuleOutput:
        """Student G0 (unbatched, attached to the student) -> RuleOutput(loss, logs) (module docstring)."""
        from foresplat.render import render

        t0 = time.perf_counter()
        w = self.weights
        gt = self._teacher(split, g0)
        terms: dict[str, torch.Tensor] = {}
        if any(getattr(w, k) for k in GAUSSIAN_TERMS):
            if gt.means.shape != g0.means.shape or gt.sh.shape != g0.sh.shape:
                raise ValueError(f"DistillRule: the student predicts SH {list(g0.sh.shape)}, the teacher "
                                 f"{list(gt.sh.shape)}; per-Gaussian terms need the same layout (prediction "
                                 "stride, SH degree): set --weights.depth/opacity/scale/colour 0 to distil "
                                 "from renders only")
            vm = split.context.cameras.viewmats
            z_s, z_t = camera_depths(g0, vm).clamp(min=1e-6), camera_depths(gt, vm).clamp(min=1e-6)  # [V, M]
            terms = {
                "depth": (z_s.log() - z_t.log()).abs().mean()
                + ((g0.means - gt.means).norm(dim=-1) / z_t.reshape(-1)).mean(),
                "opacity": (g0.opacities() - gt.opacities()).abs().mean(),
                "scale": (g0.log_scales - gt.log_scales).abs().mean(),
                "colour": (g0.sh - gt.sh).abs().mean(),
            }
        if w.render or w.gt:
            views = view_set(split, "both" if split.target.num_views else "context")
            c = views.cameras
            cams = Cameras(c.viewmats.to(g0.means), c.Ks.to(g0.means), c.width, c.height)
            bg = self.render_config.refine.background
            bgs = None if bg is None else torch.tensor(bg, dtype=g0.dtype, device=g0.device)
            out_s = render(g0, cams, backgrounds=bgs, backend=self.render_config.backend).colors  # [C, H, W, 3]
            rc = self.render_config
            if w.render:
                with torch.no_grad():
                    out_t = render(gt, cams, backgrounds=bgs, backend=rc.backend).colors
                terms["render"] = image_loss(out_s, out_t, rc.mse_weight, rc.ssim_weight)
            if w.gt:
                terms["gt"] = image_loss(out_s, views.images.to(out_s), rc.mse_weight, rc.ssim_weight)
        loss = sum(getattr(w, k) * v for k, v in terms.items() if getattr(w, k))
        logs = {f"distill_{k}": float(v.detach()) for k, v in terms.items()}
        logs["time_distill"] = time.perf_counter() - t0
        return RuleOutput(loss, logs)


@dataclass
class DistillConfig:
    """A distillation run: teacher, student, loss weights, the training settings, head fine-tunes."""

    teacher: str
    """Teacher: a predictor checkpoint (stem, .json or .safetensors), an adapter head checkpoint, or
    NAME:WEIGHTS of a registered adapter model (foresplat.models.adapter.load_feedforward)."""
    student: str = "half"
    """'half' (the teacher narrowed to <= max_param_ratio of its parameters) or a predictor preset name."""
    out_dir: Annotated[str, tyro.conf.arg(name="out")] = "runs/distill"
    """Run folder (--out): the student's training run (model.*, checkpoints/, metrics.jsonl, distill.json) and,
    with finetune_iterations > 0, head_vanilla/ and head_metagrad/."""
    max_param_ratio: float = 0.5
    """The student may have at most this fraction of the teacher's parameters."""
    weights: DistillWeights = field(default_factory=DistillWeights)
    """Loss weights."""
    train: TrainConfig = field(default_factory=lambda: train_preset("demo"))
    """Training settings of the student (its model field is replaced by the student config; out_dir by out_dir)."""
    finetune_iterations: int = 0
    """Then fine-tune the student's head this many iterations with vanilla and with MetaGrad (0 = skip)."""
    finetune_lr: float = 1e-2
    """Peak learning rate of the head fine-tunes."""
    metagrad_k: tuple[int, int, int] = (10, 100, 10)
    """MetaGrad's inner steps K ~ U{k_min..k_max} and anchor stride of the head fine-tune."""

    def validate(self) -> "DistillConfig":
        """Raises ValueError naming the field when a setting is impossible."""
        if not 0 < self.max_param_ratio <= 1:
            raise ValueError(f"DistillConfig.max_param_ratio: expected in (0, 1], got {self.max_param_ratio}")
        if self.finetune_iterations < 0 or not self.finetune_lr > 0:
            raise ValueError(f"DistillConfig.finetune_iterations/finetune_lr: expected >= 0 / > 0, got "
                             f"{self.finetune_iterations}, {self.finetune_lr}")
        self.weights.validate()
        self.train.validate()
        return self


@dataclass
class DistillResult:
    """Checkpoint stems of a distillation run (fine-tunes None when skipped)."""

    student: Path
    head_vanilla: Path | None
    head_metagrad: Path | None
    teacher_parameters: int
    student_parameters: int


def distill(config: DistillConfig) -> DistillResult:
    """Trains (or resumes, train.resume="auto") the student, then the optional head fine-tunes."""
    from foresplat.io import atomic_write_json
    from foresplat.models.dictconfig import config_to_dict
    from foresplat.train.loop import rule_config, train

    config.validate()
    from foresplat.models.adapter import load_feedforward

    teacher = load_feedforward(config.teacher)
    t_cfg = teacher.config if isinstance(teacher, Predictor) else None
    n_t = teacher.num_parameters()
    s_cfg = student_config(t_cfg, config.student, config.max_param_ratio, n_t)
    out = Path(config.out_dir)
    tc = replace(config.train, model=s_cfg, init_checkpoint=None, train_backbone=True, out_dir=str(out))
    n_s = Predictor(s_cfg).num_parameters()
    rule = DistillRule(teacher, config.weights, rule_config(tc))
    student = train(tc, rule=rule)
    atomic_write_json(out / "distill.json", {
        "teacher": str(config.teacher), "student": config.student, "teacher_parameters": n_t,
        "student_parameters": n_s, "parameter_ratio": n_s / n_t, "weights": config_to_dict(config.weights),
        "student_config": s_cfg.to_dict()})
    heads: dict[str, Path | None] = {"vanilla": None, "metagrad": None}
    if config.finetune_iterations:
        k_min, k_max, stride = config.metagrad_k
        for name in heads:
            rc = replace(config.train.rule, name=name, lam=0.0, k_min=k_min, k_max=k_max, stride=stride)
            ft = replace(config.train, rule=rc, init_checkpoint=str(student), train_backbone=False,
                         iterations=config.finetune_iterations, lr=config.finetune_lr,
                         warmup=max(1, config.finetune_iterations // 10), out_dir=str(out / f"head_{name}"),
                         val_scenes=0)
            heads[name] = train(ft)
    return DistillResult(student, heads["vanilla"], heads["metagrad"], n_t, n_s)
