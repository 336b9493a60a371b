"""`foresplat eval`: quality versus refinement steps and wall-clock for checkpoints and baselines.

    foresplat eval --ckpt vanilla=runs/v/model metagrad=runs/m/model \
        --scenes ../shared/data --synthetic 8 --image-size 128 --out runs/eval

Scenes: held-out synthetic seeds (--synthetic N) and/or paths (--scenes: a scene folder, or a
directory of scene folders, two levels deep; for ../shared/data only the evaluation scenes of
foresplat.data.catalog unless --scene-set all). Methods: every checkpoint plus the baselines (sparse
points, random). Writes results.md/.csv/.json, psnr_vs_steps.png, psnr_vs_seconds.png, a .ply per
scene and method, and an image grid per scene into --out; prints the Markdown table.
Defaults follow the paper's protocol (see foresplat.evaluate.protocol.EvalConfig).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from foresplat.evaluate.protocol import EvalConfig, build_methods, evaluate


@dataclass
class EvalCommand:
    """Evaluate predictor checkpoints and baseline initialisations under predict-then-refine."""

    ckpt: tuple[str, ...] = ()
    """Predictor checkpoints as NAME=PATH or PATH (the <path>.safetensors/.json pair, without suffix); PATH may
    also be MODEL:WEIGHTS of a registered model (anysplat, da3, vggt, pi3x, edge) or a `train --model` head.
    Suffixes (any of them, in any order; foresplat.models.filters): PATH+consistent keeps only the prediction's
    depth-consistent Gaussians, PATH+foreground drops those of the background colour, PATH+points adds the
    scene's sparse points."""
    scenes: tuple[str, ...] = ()
    """Scenes: folders (any format foresplat.data.load_scene reads), directories of scene folders, or
    synthetic:SEED (a held-out seed >= foresplat.data.synthetic.EVAL_SEED_START)."""
    scene_set: Literal["evaluation", "all"] = "evaluation"
    """For a directory of scenes: "evaluation" = the catalog's evaluation scenes in it (visible +
    held-out real, foresplat.data.catalog) when it holds any, else all; "all" = every scene found."""
    synthetic: int = 0
    """Number of held-out synthetic scenes (seeds from foresplat.data.synthetic.EVAL_SEED_START)."""
    synthetic_size: int = 64
    """Width and height of the generated synthetic scenes, pixels."""
    downscale: int | None = None
    """Loader resolution factor for real scenes (uses images_N folders when present)."""
    max_views: int | None = None
    """Load at most this many views per real scene, evenly spaced (None: all; the split then picks)."""
    protocol: Annotated[EvalConfig, tyro.conf.arg(name="")] = field(default_factory=EvalConfig)
    """The evaluation protocol."""
    out: Path = Path("runs/eval")
    """Output folder."""
    progress: bool = True
    """Show a progress bar."""


def run(cmd: EvalCommand):
    """Builds the sources and methods from the command and runs `evaluate`; returns EvalOutputs."""
    from foresplat.evaluate.sources import path_sources, synthetic_sources
    from foresplat.io.outputs import check_output_dir
    from foresplat.limits import check_memory, refine_bytes

    check_output_dir(cmd.out)
    views = cmd.protocol.num_context + cmd.protocol.num_target
    for option, size in (("--synthetic-size", cmd.synthetic_size if cmd.synthetic else None),
                         ("--image-size", cmd.protocol.image_size)):
        if size is not None:
            if size < 1:
                raise ValueError(f"{option}: expected a positive number of pixels, got {size}")
            check_memory(refine_bytes(views, size, size, 0), f"evaluation at {option} {size}")
    sources = []
    if cmd.synthetic:
        from foresplat.data.synthetic import SyntheticConfig

        views = max(16, cmd.protocol.num_context + cmd.protocol.num_target)
        sources += synthetic_sources(cmd.synthetic, SyntheticConfig(width=cmd.synthetic_size,
                                                                    height=cmd.synthetic_size, num_views=views))
    options = {k: v for k, v in (("downscale", cmd.downscale), ("max_views", cmd.max_views)) if v is not None}
    for p in cmd.scenes:
        kind, _, seed = str(p).partition(":")
        if kind == "synthetic" and seed:
            from foresplat.data.synthetic import SyntheticConfig

            try:
                first = int(seed)
            except ValueError:
                raise ValueError(f"--scenes {p}: expected synthetic:SEED with an integer seed") from None
            views = max(16, cmd.protocol.num_context + cmd.protocol.num_target)
            sources += synthetic_sources(1, SyntheticConfig(width=cmd.synthetic_size, height=cmd.synthetic_size,
                                                            num_views=views), start_seed=first)
            continue
        sources += path_sources(Path(p), which=cmd.scene_set, **options)
    if not sources:
        raise ValueError("nothing to evaluate: give --scenes PATH ... and/or --synthetic N")
    methods = build_methods(cmd.ckpt, cmd.protocol.baselines)
    return evaluate(sources, methods, cmd.protocol, cmd.out, progress=cmd.progress)


def main(argv: list[str]) -> int:
    """Entry point of `foresplat eval`."""
    from foresplat.commands._vocab import modernize

    cmd = tyro.cli(EvalCommand, args=modernize("eval", argv), prog="foresplat eval")
    outputs = run(cmd)  # errors: one line, exit 2, through foresplat.errors.run_command
    print(outputs.markdown)
    for key, path in {**outputs.tables, **outputs.plots}.items():
        print(f"{key}: {path}")
    failed = [s.scene for s in outputs.report.scenes if s.error] + [
        f"{s.scene}/{m.method}" for s in outputs.report.scenes for m in s.methods if m.error]
    if failed:
        print(f"foresplat eval: {len(failed)} scene(s)/method(s) failed (see the table): {', '.join(failed)}",
              file=sys.stderr)
    return 0 if outputs.report.ok_scenes() else 1
