"""`foresplat train --preset tiny|demo|base [--rule NAME] [overrides...]`: train a predictor.

    foresplat train --preset demo
    foresplat train --preset base --rule metagrad --ckpt runs/base/model --train-backbone False \\
        --rule.lam 0.0 --iterations 2000 --out runs/metagrad
    torchrun --standalone --nproc_per_node 2 -m foresplat.cli train --preset tiny
    foresplat train --preset base --resume auto          # continue a killed run exactly
    foresplat train --model anysplat --weights W --rule metagrad --width 224 --height 224 --out runs/a
                                                         # head-only fine-tune of a pretrained model

`--preset` picks the starting TrainConfig (foresplat.train.config.PRESETS), `--rule NAME` is a
shortcut for `--rule.name NAME`; every other TrainConfig field is an override (tyro, see --help).
`--model NAME --weights PATH [--head H]` trains a registered model's Gaussian head instead
(foresplat.commands.adapter_train; the model's other parameters stay frozen, their digest is checked).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import tyro

from foresplat.meta.config import RuleName
from foresplat.train.config import PRESETS, TrainConfig, train_preset


def parse(argv: list[str]) -> TrainConfig:
    """argv -> the resolved TrainConfig (preset, then --rule, then tyro overrides)."""
    from foresplat.commands._vocab import modernize

    argv = modernize("train", argv)
    pre = argparse.ArgumentParser(prog="foresplat train", add_help=False, allow_abbrev=False)
    pre.add_argument("--preset", choices=sorted(PRESETS), default="base")
    pre.add_argument("--rule", choices=list(RuleName.__args__), default=None)
    known, rest = pre.parse_known_args(argv)
    default = train_preset(known.preset)
    if known.rule is not None:
        default = replace(default, rule=replace(default.rule, name=known.rule))
    desc = (f"Train a predictor. Preset {known.preset!r} (choose with --preset {'|'.join(sorted(PRESETS))}); "
            "--rule NAME sets rule.name; the options below override the preset. --model NAME --weights PATH "
            "[--head H]: fine-tune the Gaussian head of a pretrained model (edge, anysplat, da3) instead.")
    return tyro.cli(TrainConfig, default=default, args=rest, prog="foresplat train", description=desc).validate()


def main(argv: list[str]) -> int:
    """Entry point of `foresplat train`: trains and prints the final checkpoint path (rank 0)."""
    import os

    from foresplat.train import train

    from foresplat.commands.adapter_train import split_model_args, train_adapter_head

    model_args, argv = split_model_args(argv)
    config = parse(argv)  # an impossible setting: ValueError -> one line, exit 2 (foresplat.errors.run_command)
    if model_args.model is not None:  # a registered model's Gaussian head, fine-tuned alone
        print(f"head checkpoint: {train_adapter_head(config, model_args)}")
        return 0
    final = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"final checkpoint: {final}")
    return 0
