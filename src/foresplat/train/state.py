"""Training checkpoints: model weights + predictor config + step + the training state.

One foresplat.io checkpoint pair per save (atomic). Tensors: the predictor's state_dict under its
own names (so `Predictor.from_checkpoint` reads a training checkpoint directly), the optimizer
state under "train/optim.*" and the torch RNG state under "train/rng.*". JSON meta: the predictor
meta (kind "predictor", schema, config, step) plus {"train": {"optim": skeleton, "rng": skeleton,
"config": resolved TrainConfig, "world_size": W}}. The learning rate is a pure function of the
step and the data a pure function of (seed, step, rank), so step + optimizer + RNG is the whole state.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from foresplat.io import checkpoint_paths, flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from foresplat.models import Predictor, config_from_checkpoint_meta

CKPT_DIR = "checkpoints"
_STEP_RE = re.compile(r"^step_(\d+)\.json$")


def checkpoint_path(out_dir: str | Path, step: int) -> Path:
    """out_dir/checkpoints/step_<step> (the stem of the .safetensors/.json pair)."""
    return Path(out_dir) / CKPT_DIR / f"step_{step:07d}"


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """[(step, stem)] of the complete interval checkpoints in out_dir, oldest first."""
    folder = Path(out_dir) / CKPT_DIR
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = _STEP_RE.match(p.name)
            if m and p.with_suffix(".safetensors").is_file():
                found.append((int(m.group(1)), p.with_suffix("")))
    return sorted(found)


def save_training_checkpoint(path: str | Path, model: Predictor, optimizer: torch.optim.Optimizer,
                             step: int, config_dict: dict[str, Any], world_size: int) -> Path:
    """Writes model + optimizer + RNG state after `step` optimizer steps; returns the JSON path."""
    tensors = {k: v.detach() for k, v in model.state_dict().items()}
    optim_tensors, optim_skel = flatten_state(optimizer.state_dict(), "train/optim")
    rng_tensors, rng_skel = flatten_state({"torch": torch.get_rng_state()}, "train/rng")
    tensors.update(optim_tensors)
    tensors.update(rng_tensors)
    meta = model.checkpoint_meta(step)
    meta["train"] = {"optim": optim_skel, "rng": rng_skel, "config": config_dict, "world_size": world_size}
    return save_checkpoint(path, tensors, meta)


def load_training_checkpoint(path: str | Path, model: Predictor, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restores model weights, optimizer and RNG state in place; returns the checkpoint's meta.

    Raises ValueError naming the file when it is not a training checkpoint or its model config
    differs from `model`'s."""
    state, meta = load_checkpoint(path)
    config = config_from_checkpoint_meta(meta, str(path))
    if config != model.config:
        raise ValueError(f"{path}: the checkpoint's predictor config differs from the run's "
                         f"(checkpoint {config.to_dict()}, run {model.config.to_dict()})")
    train = meta.get("train")
    if not isinstance(train, dict) or "optim" not in train:
        raise ValueError(f"{path}: not a training checkpoint (no optimizer state); use "
                         "init_checkpoint to fine-tune from a model checkpoint instead of resume")
    model.load_state_dict({k: v for k, v in state.items() if "/" not in k}, strict=True)
    optimizer.load_state_dict(unflatten_state(state, train["optim"]))
    torch.set_rng_state(unflatten_state(state, train["rng"])["torch"])
    return meta


def resolve_resume(resume: str | None, out_dir: str | Path) -> Path | None:
    """The checkpoint to resume from: None, "auto" (latest in out_dir, None if there is none), or a path."""
    if resume is None:
        return None
    if resume == "auto":
        found = list_checkpoints(out_dir)
        return found[-1][1] if found else None
    st, js = checkpoint_paths(resume)
    if not js.is_file():
        raise FileNotFoundError(f"TrainConfig.resume: no checkpoint at {resume} (expected {js})")
    return js.with_suffix("")


def load_latest_valid_checkpoint(out_dir: str | Path, model: Predictor, optimizer: torch.optim.Optimizer
                                 ) -> tuple[Path | None, dict[str, Any] | None, list[str]]:
    """`resume="auto"`: restores the NEWEST checkpoint of out_dir that loads (complete, matching its
    checksums, of this run's architecture), skipping corrupt or foreign newer ones.

    Returns (stem, meta, skipped) with skipped = one message per checkpoint passed over; (None,
    None, []) when out_dir holds no checkpoint. Raises ValueError naming every checkpoint when
    none loads (it never silently starts over on top of them)."""
    found = list_checkpoints(out_dir)
    skipped: list[str] = []
    for _, stem in reversed(found):
        try:
            return stem, load_training_checkpoint(stem, model, optimizer), skipped
        except (ValueError, OSError, KeyError, RuntimeError) as e:  # corrupt, incomplete or foreign
            skipped.append(f"{stem}: {' '.join(str(e).split())[:300]}")
    if found:
        raise ValueError(f"--resume auto: none of the {len(found)} checkpoint(s) in {Path(out_dir) / CKPT_DIR} "
                         f"loads; newest: {skipped[0]}")
    return None, None, []


def prune_checkpoints(out_dir: str | Path, keep: int) -> None:
    """Deletes all but the newest `keep` interval checkpoints (keep = 0: keep all)."""
    if keep <= 0:
        return
    for _, stem in list_checkpoints(out_dir)[:-keep]:
        for p in checkpoint_paths(stem):
            p.unlink(missing_ok=True)
