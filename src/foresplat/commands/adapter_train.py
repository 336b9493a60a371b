"""`foresplat train --model NAME --weights PATH [--head H] [train options]`: fine-tune a model's Gaussian head.

    foresplat train --model anysplat --weights weights/anysplat --rule metagrad --width 224 --height 224 \\
        --iterations 500 --out runs/anysplat_metagrad
    foresplat predict SCENE --model anysplat --weights weights/anysplat --head runs/anysplat_metagrad/head

Any registered adapter (foresplat.models.adapter: edge, anysplat, da3, vggt, pi3x). Only the head trains: the
frozen part runs without gradients and its digest (sha256 of every other parameter) is recorded before
and after, and must match. The TrainConfig (preset + overrides) gives the scenes (one per iteration,
foresplat.train.data.sample_split slot 0: batch_size, warm-up, the lr schedule and resume are not
used), the rule, iterations, lr (constant, Adam), grad_clip, size, seed, device, val_scenes and the
out folder. Writes OUT/head.safetensors + OUT/head.json (kind "adapter_head": model, weights, rule,
iterations, backbone digests, zero-step held-out MSE / PSNR on config.val_scenes synthetic scenes
before and after) and OUT/metrics.jsonl (one line per step).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from foresplat.train.config import TrainConfig


@dataclass
class ModelArgs:
    """The adapter options of `foresplat train` / `predict`."""

    model: str | None
    weights: str | None
    head: str | None


def split_model_args(argv: list[str]) -> tuple[ModelArgs, list[str]]:
    """Takes --model NAME, --weights PATH and --head PATH out of argv -> (ModelArgs, the rest).

    ValueError when --weights or --head come without --model, or --model without --weights."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--model", default=None)
    pre.add_argument("--weights", default=None)
    pre.add_argument("--head", default=None)
    known, rest = pre.parse_known_args(argv)
    args = ModelArgs(known.model, known.weights, known.head)
    if args.model is None and (args.weights is not None or args.head is not None):
        raise ValueError("--weights/--head: name the model too (--model NAME, e.g. anysplat, da3, edge)")
    if args.model is not None and args.weights is None:
        raise ValueError(f"--model {args.model}: give its local weights with --weights PATH")
    return args, rest


def train_adapter_head(config: TrainConfig, args: ModelArgs) -> Path:
    """Head-only fine-tuning of args.model (module docstring) -> the head checkpoint stem OUT/head."""
    from foresplat.models.adapter import load_adapter
    from foresplat.models.adapters.finetune import HeadFinetuneConfig, finetune_head
    from foresplat.train.data import sample_split
    from foresplat.train.loop import rule_config

    device = config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    adapter = load_adapter(args.model, args.weights, args.head).to(device)
    d = adapter.divisor
    if config.width % d or config.height % d:
        raise ValueError(f"--width/--height: model {args.model!r} needs multiples of {d}, "
                         f"got {config.width}x{config.height}")
    before = adapter.backbone_digest()
    val_before = _heldout(adapter, config)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    ft = HeadFinetuneConfig(rule=rule_config(config), iterations=config.iterations, lr=config.lr,
                            grad_clip=config.grad_clip, seed=config.seed)
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as log:
        def on_step(entry: dict) -> None:
            log.write(json.dumps(entry) + "\n")
            log.flush()

        adapter.eval().head.train()  # the frozen part in inference mode, the head as in training
        logs = finetune_head(adapter, lambda it: sample_split(config, it, 0, 0), ft, on_step)
    after = adapter.backbone_digest()
    val_after = _heldout(adapter.eval(), config)
    if after != before:  # cannot happen: the optimizer only holds head parameters
        raise RuntimeError(f"model {args.model!r}: parameters outside the head changed during head-only training")
    head = out / "head"
    adapter.save_head(head, {"weights": str(args.weights), "init_head": args.head, "rule": config.rule,
                             "iterations": config.iterations, "width": config.width, "height": config.height,
                             "backbone_sha256_before": before, "backbone_sha256_after": after,
                             "final_loss": next((x["loss"] for x in reversed(logs) if "loss" in x), None),
                             "skipped_scenes": sum("skipped" in x for x in logs),
                             "heldout_before": val_before, "heldout_after": val_after})
    if val_before.get("val_psnr") is not None and val_after.get("val_psnr") is not None:
        print(f"held-out zero-step PSNR on {config.val_scenes} synthetic scenes: "
              f"{val_before['val_psnr']:.2f} dB before, {val_after['val_psnr']:.2f} dB after")
    return head


def _heldout(adapter, config: TrainConfig) -> dict:
    """Zero-step held-out metrics on config.val_scenes synthetic scenes ({} when val_scenes is 0;
    {"error": ...} when a scene cannot be predicted, e.g. no camera fit)."""
    from foresplat.train.data import validation_splits
    from foresplat.train.validation import heldout_metrics

    if config.val_scenes <= 0:
        return {}
    try:
        return heldout_metrics(adapter, validation_splits(config), config.backend)
    except ValueError as e:
        return {"error": str(e)}
