"""Training scenes as a pure function of (seed, iteration, rank, slot).

    sample_split(config, iteration, rank, slot) -> SceneSplit     the slot-th scene of an iteration on a rank
    validation_splits(config) -> list[SceneSplit]                 fixed held-out synthetic scenes
    collate(splits) -> ContextBatch                               context views stacked for the predictor

Every random choice (synthetic vs dataset, which scene, which views, which crop) is drawn from a
generator seeded by mix_seed(seed, iteration, rank, slot), so a resumed run sees exactly the
scenes the uninterrupted run would have seen and ranks never share scenes. Generated and loaded
scenes are cached per process (they are pure functions of their seed / path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch

from foresplat.data.normalize import normalize_split
from foresplat.data.scene import Scene, SceneSplit, split_views
from foresplat.data.synthetic import EVAL_SEED_START, TRAIN_SEED_START, SyntheticConfig, generate_scene
from foresplat.train.config import TrainConfig


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy SeedSequence; stable across runs and platforms)."""
    words = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, dtype=np.uint32)
    return int(words[0]) << 31 ^ int(words[1])


@dataclass
class ContextBatch:
    """The predictor's input for B scenes: images [B,V,H,W,3], viewmats [B,V,4,4], Ks [B,V,3,3], near/far [B]."""

    images: torch.Tensor
    viewmats: torch.Tensor
    Ks: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor

    def to(self, device) -> "ContextBatch":
        return ContextBatch(*(t.to(device) for t in (self.images, self.viewmats, self.Ks, self.near, self.far)))

    def args(self) -> tuple[torch.Tensor, ...]:
        """(images, viewmats, Ks, near, far): the positional arguments of Predictor.forward."""
        return self.images, self.viewmats, self.Ks, self.near, self.far


def collate(splits: list[SceneSplit]) -> ContextBatch:
    """Stacks the context views of equally sized splits into a ContextBatch."""
    ctx = [s.context for s in splits]
    shapes = {tuple(c.images.shape) for c in ctx}
    if len(shapes) != 1:
        raise ValueError(f"collate: context views differ in shape across the batch: {sorted(shapes)}")
    f64 = lambda xs: torch.tensor(xs, dtype=torch.float32)  # noqa: E731
    return ContextBatch(torch.stack([c.images for c in ctx]), torch.stack([c.cameras.viewmats for c in ctx]),
                        torch.stack([c.cameras.Ks for c in ctx]), f64([c.near for c in ctx]),
                        f64([c.far for c in ctx]))


_SYNTHETIC_CACHE: dict[tuple[int, str], Scene] = {}


def synthetic_scene(seed: int, config: SyntheticConfig, cache: bool = True) -> Scene:
    """generate_scene(seed, config), cached per process when `cache` (a scene is a pure function of both).

    Only the bounded sets are cached (the training pool and the validation scenes): about 1 MB per
    64x64 scene of 12 views, so a pool of 512 such scenes holds ~0.5 GB per process.
    """
    key = (int(seed), repr(config))
    if key in _SYNTHETIC_CACHE:
        return _SYNTHETIC_CACHE[key]
    scene = generate_scene(int(seed), config)
    if cache:
        _SYNTHETIC_CACHE[key] = scene
    return scene


@lru_cache(maxsize=64)
def _dataset_scene(path: str, long_side: int, downscale: int | None) -> Scene:
    from foresplat.data.loaders import load_scene  # loaders import optional format readers

    scene = load_scene(path, **({} if downscale is None else {"downscale": downscale})).validate()
    s = long_side / max(scene.width, scene.height)
    if s < 1:
        scene = scene.resized(max(1, round(scene.width * s)), max(1, round(scene.height * s)))
    return scene


def _crop(scene: Scene, left: int, top: int, width: int, height: int) -> Scene:
    sl = lambda t: None if t is None else t[:, top:top + height, left:left + width]  # noqa: E731
    return replace(scene, images=sl(scene.images), masks=sl(scene.masks), depths=sl(scene.depths),
                   cameras=scene.cameras.cropped(left, top, width, height))


def _random_crop(scene: Scene, width: int, height: int, max_scale: float, g: torch.Generator) -> Scene:
    """Resizes so that a width x height crop covers 1/s of the image (s ~ U[1, max_scale]), then crops at random."""
    cover = max(width / scene.width, height / scene.height)  # scale at which the crop just fits
    s = cover * (1 + (max_scale - 1) * float(torch.rand((), generator=g)))
    rw, rh = max(width, math.ceil(scene.width * s)), max(height, math.ceil(scene.height * s))
    scene = scene.resized(rw, rh)
    left = int(torch.randint(0, rw - width + 1, (), generator=g))
    top = int(torch.randint(0, rh - height + 1, (), generator=g))
    return _crop(scene, left, top, width, height)


def _colour_jitter(scene: Scene, strength: float, g: torch.Generator) -> Scene:
    """Per-scene photometric augmentation: gain, per-channel gain and gamma within +-strength (0 = none)."""
    if strength <= 0:
        return scene
    r = lambda n: (torch.rand(n, generator=g) * 2 - 1) * strength  # noqa: E731
    gain = (1 + r(1)) * (1 + 0.5 * r(3))  # [3]
    gamma = 1 + r(1)  # [1]
    images = (scene.images.clamp(0, 1) ** gamma * gain).clamp(0, 1)  # [V, H, W, 3]
    return replace(scene, images=images)


def _fit(scene: Scene, width: int, height: int) -> Scene:
    """Synthetic scene -> width x height (resize keeping the aspect, then centre crop)."""
    if (scene.width, scene.height) == (width, height):
        return scene
    s = max(width / scene.width, height / scene.height)
    scene = scene.resized(max(width, round(scene.width * s)), max(height, round(scene.height * s)))
    return scene.center_cropped(width, height)


@lru_cache(maxsize=16)
def _expand_datasets(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Dataset entries -> scene folders: a scene stays, a folder of scenes becomes its training scenes."""
    from foresplat.data.catalog import is_scene, training_scenes

    out: list[str] = []
    for p in paths:
        found = [p] if is_scene(p) else [str(f) for f in training_scenes(p)]
        if not found:
            raise ValueError(f"TrainConfig.datasets: {p} is neither a scene nor a folder of training scenes")
        out += found
    return tuple(out)


def sample_split(config: TrainConfig, iteration: int, rank: int, slot: int) -> SceneSplit:
    """The training scene `slot` of `iteration` on `rank`, split into context and target views."""
    g = torch.Generator().manual_seed(mix_seed(config.seed, iteration, rank, slot, 1))
    use_dataset = bool(config.datasets) and float(torch.rand((), generator=g)) < config.dataset_weight
    split_seed = int(torch.randint(0, 2**31 - 1, (), generator=g))
    n_ctx, n_tgt = config.num_context, config.num_target
    if use_dataset:
        datasets = _expand_datasets(tuple(config.datasets))
        path = datasets[int(torch.randint(0, len(datasets), (), generator=g))]
        long_side = 2 * max(config.width, config.height) * int(math.ceil(config.dataset_max_scale))
        scene = _dataset_scene(path, long_side, config.dataset_downscale)
        split = split_views(scene, n_ctx, n_tgt, "random", split_seed)
        views = scene.subset(split.context_indices + split.target_indices)
        views = _random_crop(views, config.width, config.height, config.dataset_max_scale, g)
        views = _colour_jitter(views, config.colour_jitter, g)
        return normalize_split(SceneSplit(views.subset(range(n_ctx)), views.subset(range(n_ctx, n_ctx + n_tgt)),
                                          split.context_indices, split.target_indices))
    if config.synthetic_pool > 0:
        seed = TRAIN_SEED_START + int(torch.randint(0, config.synthetic_pool, (), generator=g))
    else:
        seed = TRAIN_SEED_START + mix_seed(config.seed, iteration, rank, slot, 2) % (EVAL_SEED_START - TRAIN_SEED_START)
    scene = _fit(synthetic_scene(seed, config.synthetic, cache=config.synthetic_pool > 0),
                 config.width, config.height)
    return normalize_split(split_views(scene, n_ctx, n_tgt, "random", split_seed))


def validation_splits(config: TrainConfig) -> list[SceneSplit]:
    """`config.val_scenes` held-out synthetic scenes (seeds EVAL_SEED_START + i), split with rule "even"."""
    out = []
    for i in range(config.val_scenes):
        scene = _fit(synthetic_scene(EVAL_SEED_START + i, config.synthetic), config.width, config.height)
        out.append(normalize_split(split_views(scene, config.num_context, max(config.num_target, 1), "even", seed=i)))
    return out
