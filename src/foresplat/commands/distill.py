"""`foresplat distill --teacher CKPT --student half|edge-t|... --out DIR`: a small student from a teacher.

    foresplat distill --teacher runs/demo/model --student half --out runs/distill
    foresplat distill --teacher runs/base/model --preset base --student edge-s --finetune-iterations 200
    foresplat distill --teacher runs/demo/model --out runs/distill --resume auto     # continue a killed run

The student (at most --max-param-ratio of the teacher's parameters) is trained by foresplat train's
loop on the teacher's Gaussians and renders (foresplat.train.distill); `--preset` picks the training
settings (tiny, demo, base; default demo) and `--train.FIELD` overrides any of them. With
--finetune-iterations N the student's head is then fine-tuned with vanilla and with MetaGrad
(DIR/head_vanilla, DIR/head_metagrad).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Annotated

import tyro

from foresplat.train.config import PRESETS, train_preset
from foresplat.train.distill import DistillConfig


def parse(argv: list[str]) -> DistillConfig:
    """argv -> the resolved DistillConfig (--preset for the training settings, then tyro overrides)."""
    pre = argparse.ArgumentParser(prog="foresplat distill", add_help=False, allow_abbrev=False)
    pre.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    pre.add_argument("--resume", default=None)
    known, rest = pre.parse_known_args(argv)
    train = train_preset(known.preset, progress=True)
    if known.resume is not None:
        train = replace(train, resume=known.resume)

    Cmd = Annotated[DistillConfig, tyro.conf.arg(name="")]  # noqa: N806
    desc = (f"Distil a student predictor from a teacher. Training preset {known.preset!r} (--preset "
            f"{'|'.join(sorted(PRESETS))}); --resume auto continues a run; --train.FIELD overrides a training setting.")
    default = DistillConfig(teacher="", train=train)
    cfg = tyro.cli(Cmd, default=default, args=rest, prog="foresplat distill", description=desc,
                   config=(tyro.conf.FlagConversionOff,))
    if not cfg.teacher:
        raise ValueError("--teacher: a teacher predictor checkpoint is required")
    return cfg.validate()


def main(argv: list[str]) -> int:
    """Entry point of `foresplat distill`: prints the student and fine-tune checkpoints."""
    from foresplat.train.distill import distill

    res = distill(parse(argv))
    print(f"student: {res.student} ({res.student_parameters:,} parameters, "
          f"{res.student_parameters / res.teacher_parameters:.0%} of the teacher's {res.teacher_parameters:,})")
    if res.head_vanilla is not None:
        print(f"head fine-tunes: {res.head_vanilla}, {res.head_metagrad}")
    return 0
