"""`TrainConfig`: every setting of a training run, with named presets (tiny, demo, base).

The resolved config is written as YAML next to every run (`config.yaml`); it is data, never
eval'd. `train_preset(name)` returns a fresh copy of a preset; the CLI applies overrides on top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

import tyro

from foresplat.data.synthetic_config import SyntheticConfig
from foresplat.meta import RuleConfig
from foresplat.models import PredictorConfig
from foresplat.models.head import HeadOutput, check_head_outputs

Backend = Literal["auto", "reference", "cpu", "gsplat"]


@dataclass
class TrainConfig:
    """A training run: model, rule, data, optimisation, logging (one line per field)."""

    model: PredictorConfig = field(default_factory=lambda: PredictorConfig.preset("edge-s"))
    """Predictor architecture (ignored with --ckpt: the checkpoint's config is used)."""
    rule: RuleConfig = field(default_factory=RuleConfig)
    """Training rule (foresplat.meta): vanilla, metagrad, reptile, dense, unrolled."""
    init_checkpoint: Annotated[str | None, tyro.conf.arg(name="ckpt")] = None
    """Start from this predictor checkpoint's weights (fine-tuning) instead of a random init (--ckpt)."""
    train_backbone: bool = True
    """False: freeze the backbone and train the Gaussian head only (MetaGrad fine-tuning)."""
    head_outputs: tuple[HeadOutput, ...] = ()
    """With train_backbone False: train only the head's last layer, and only its rows for these outputs
    (position, scale, rotation, opacity, colour; models.head.HEAD_OUTPUTS); () = the whole head."""
    batch_size: int = 2
    """Scenes per iteration per process."""
    num_context: int = 4
    """Context (input) views per scene: predicted from, and refined on by the rules."""
    num_target: int = 2
    """Held-out target views per scene, rendered by the rule's loss."""
    width: int = 64
    """Training image width in pixels (a multiple of the backbone's divisor)."""
    height: int = 64
    """Training image height in pixels (a multiple of the backbone's divisor)."""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    """Synthetic scene generator; scenes are resized to width x height if they differ."""
    synthetic_pool: int = 0
    """Distinct synthetic training scenes (seeds 0..pool-1, cached per process); 0 = an endless stream."""
    datasets: tuple[str, ...] = ()
    """Scene folders (foresplat.data.load_scene) mixed into training with random view subsets and crops;
    a folder that is not itself a scene stands for its training scenes (foresplat.data.catalog:
    every scene under it except the visible and held-out evaluation scenes)."""
    dataset_weight: float = 0.5
    """Probability that a training scene comes from `datasets` rather than the synthetic generator."""
    dataset_downscale: int | None = None
    """Loader downscale factor for `datasets` (pre-downscaled image folders, e.g. LLFF images_8); None = full size."""
    dataset_max_scale: float = 1.5
    """Random zoom of dataset crops: the crop covers 1/s of the resized image, s ~ U[1, this]."""
    colour_jitter: float = 0.0
    """Photometric augmentation of dataset scenes: gain and gamma drawn within +-this (0 = none)."""
    iterations: int = 1000
    """Total optimizer steps."""
    lr: float = 3e-4
    """Peak AdamW learning rate."""
    lr_min_ratio: float = 0.1
    """Final learning rate as a fraction of `lr` (cosine decay)."""
    warmup: int = 50
    """Linear warm-up iterations."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.99)
    """AdamW betas."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = no clipping)."""
    seed: int = 0
    """Seed of the model init and of every random draw (scenes, splits, rule generators)."""
    out_dir: Annotated[str, tyro.conf.arg(name="out")] = "runs/train"
    """Run folder (--out): config.yaml, metrics.jsonl, checkpoints/, model.{safetensors,json}, summary.json."""
    resume: str | None = None
    """Continue a run: a checkpoint path, or "auto" = the latest checkpoint in out_dir (fresh start if none)."""
    log_interval: int = 10
    """Write a metrics line every this many iterations."""
    ckpt_interval: int = 200
    """Write a checkpoint every this many iterations (and at the end); 0 = only at the end."""
    keep_checkpoints: int = 0
    """Keep only the newest this many interval checkpoints (0 = keep all)."""
    val_interval: int = 0
    """Evaluate G0 on held-out synthetic scenes every this many iterations (0 = only at start and end)."""
    val_scenes: int = 4
    """Number of held-out synthetic validation scenes (seeds from EVAL_SEED_START); 0 = no validation."""
    backend: Backend = "auto"
    """Render backend of the rule and of validation (overrides rule.backend and rule.refine.backend)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Device; "auto" = cuda when available. Under torchrun each rank uses cuda:LOCAL_RANK."""
    tensorboard: bool = False
    """Also write TensorBoard events to out_dir/tb (needs the tensorboard package)."""
    progress: bool = True
    """Show a tqdm progress bar (rank 0)."""
    rule_workers: int = 1
    """Threads that run the rule on the batch's scenes concurrently (each scene has its own generator, so the
    result is identical to 1 = one after the other; >1 speeds up the inner refinements of metagrad/reptile)."""

    def validate(self) -> "TrainConfig":
        """Raises ValueError naming the field when a setting is impossible."""
        def bad(name: str, want: str) -> None:
            raise ValueError(f"TrainConfig.{name}: expected {want}, got {getattr(self, name)!r}")

        self.model.validate()
        self.rule.validate()
        if self.head_outputs:
            if self.train_backbone:
                bad("head_outputs", "no restriction (()) when the backbone trains (train_backbone True)")
            check_head_outputs(self.head_outputs, "TrainConfig.head_outputs")
        self.synthetic.validate()
        for name in ("batch_size", "num_context", "width", "height", "iterations", "rule_workers"):
            if getattr(self, name) < 1:
                bad(name, "a positive integer")
        for name in ("num_target", "warmup", "synthetic_pool", "ckpt_interval", "val_interval",
                     "val_scenes", "keep_checkpoints"):
            if getattr(self, name) < 0:
                bad(name, "a non-negative integer")
        if self.log_interval < 1:
            bad("log_interval", "a positive integer")
        if self.num_target < 1 and "target" in (self.rule.zero_step_views, self.rule.anchor_views):
            bad("num_target", "at least 1 (the rule evaluates target views)")
        if not 0 < self.lr <= 1 or not 0 <= self.lr_min_ratio <= 1:
            raise ValueError(f"TrainConfig.lr/lr_min_ratio: need 0 < lr <= 1 and 0 <= lr_min_ratio <= 1, "
                             f"got {self.lr}, {self.lr_min_ratio}")
        if not (0 <= self.weight_decay <= 10 and 0 <= self.grad_clip < math.inf):
            raise ValueError(f"TrainConfig.weight_decay/grad_clip: expected finite values >= 0 (weight_decay "
                             f"<= 10), got {self.weight_decay}, {self.grad_clip}")
        if not all(0 <= b < 1 for b in self.betas):
            bad("betas", "two values in [0, 1)")
        need = self.num_context + self.num_target
        if self.synthetic.num_views < need:
            raise ValueError(f"TrainConfig.synthetic.num_views: {self.synthetic.num_views} views per scene, "
                             f"but num_context + num_target = {need}")
        if not 0 <= self.dataset_weight <= 1:
            bad("dataset_weight", "a probability in [0, 1]")
        if not 0 <= self.colour_jitter < 1:
            bad("colour_jitter", "a value in [0, 1)")
        if not 1 <= self.dataset_max_scale < math.inf:
            bad("dataset_max_scale", "a value >= 1")
        if self.resume is not None and not self.resume:
            bad("resume", 'a checkpoint path, "auto", or None')
        return self


def _synthetic(size: int, views: int, fast: bool, rig: str = "mixed") -> SyntheticConfig:
    if fast:  # hard shadows, no supersampling: ~4x cheaper scenes for tests and the demo
        return SyntheticConfig(width=size, height=size, num_views=views, rig=rig, supersample=1, shadow_samples=1)
    return SyntheticConfig(width=size, height=size, num_views=views, rig=rig)


def _tiny() -> TrainConfig:
    return TrainConfig(model=PredictorConfig.preset("edge-t"), batch_size=1, num_context=2, num_target=2,
                       width=32, height=32, synthetic=_synthetic(32, 4, fast=True, rig="forward"), synthetic_pool=4,
                       iterations=8, lr=2e-3, warmup=2, log_interval=1, ckpt_interval=4, val_scenes=2,
                       out_dir="runs/tiny")


def _demo() -> TrainConfig:
    return TrainConfig(model=PredictorConfig.preset("edge-t"), batch_size=2, num_context=3, num_target=2,
                       width=48, height=48, synthetic=_synthetic(48, 6, fast=True, rig="forward"), synthetic_pool=24,
                       iterations=300, lr=2e-3, warmup=10, log_interval=10, ckpt_interval=100,
                       val_scenes=4, out_dir="runs/demo")


def _base() -> TrainConfig:
    return TrainConfig(model=PredictorConfig.preset("edge-s"), batch_size=4, num_context=6, num_target=3,
                       width=64, height=64, synthetic=_synthetic(64, 12, fast=False), synthetic_pool=512,
                       iterations=4000, lr=5e-4, warmup=100, log_interval=10, ckpt_interval=250,
                       val_interval=250, val_scenes=8, out_dir="runs/base")


def _real() -> TrainConfig:
    return TrainConfig(model=PredictorConfig.preset("edge-r"), batch_size=2, num_context=6, num_target=2,
                       width=64, height=48, synthetic=_synthetic(64, 10, fast=True, rig="mixed"), synthetic_pool=64,
                       datasets=("../shared/data",), dataset_weight=0.7, dataset_max_scale=1.3, colour_jitter=0.15,
                       iterations=1200, lr=1e-3, warmup=50, log_interval=10, ckpt_interval=100, keep_checkpoints=0,
                       val_scenes=4, out_dir="runs/real")


PRESETS = {"tiny": _tiny, "demo": _demo, "base": _base, "real": _real}
"""Named presets: tiny (tests and CI, seconds), demo (`foresplat demo`, minutes on 2 CPU cores),
base (the experiments' base model), real (the shipped real-capture predictor: real scenes under
../shared/data minus the evaluation scenes, mixed with synthetic ones; see docs/REAL.md)."""


def train_preset(name: str, **overrides) -> TrainConfig:
    """A fresh copy of preset `name` with field `overrides` applied (validated)."""
    if name not in PRESETS:
        raise ValueError(f"train_preset: unknown preset {name!r}; available: {sorted(PRESETS)}")
    return replace(PRESETS[name](), **overrides).validate()
