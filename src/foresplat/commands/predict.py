"""`foresplat predict SCENE --ckpt CKPT --out g0.ply`: feed-forward Gaussians from a trained predictor.

    foresplat predict ../shared/data/llff_fern --width 64 --out g0.ply     # the shipped predictor
    foresplat predict synthetic:3 --ckpt runs/demo/model --out g0.ply
    foresplat predict ../shared/data/llff_fern --ckpt runs/base/model --width 128 --out fern_g0.ply
    foresplat predict ../shared/data/llff_fern --width 64 --consistent 0.15 --foreground --out g0.ply  # filtered
    foresplat predict SCENE --model anysplat --weights weights/anysplat --width 448 --height 448 --out g0.ply

The scene (any format foresplat.data.load_scene reads, or synthetic:SEED) is resized if asked and
to multiples of the predictor's divisor, split into context / target views (split_views), and the
predictor runs on the context views. Writes the .ply (3DGS layout) and a JSON next to it (same
stem) with the split, the size, the Gaussian count and the timing, so that `foresplat refine
--init ply:...` / evaluation can reuse the same views.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch
import tyro

from foresplat.data.scene import Scene, split_views


@dataclass
class PredictCommand:
    """Predict Gaussians G0 for a scene from a predictor checkpoint and write them as a .ply."""

    scene: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="SCENE")]
    """Scene folder or file (any format load_scene reads), or synthetic:SEED."""
    ckpt: str | None = None
    """Predictor checkpoint (stem, .json or .safetensors), e.g. runs/demo/model; "default" or none = the
    real-capture predictor shipped with the package (or use --model)."""
    model: str | None = None
    """A registered model instead of --ckpt: edge, anysplat, da3 (foresplat.models.adapter), with --weights."""
    weights: str | None = None
    """Local weights of --model (nothing is downloaded)."""
    head: str | None = None
    """Head weights of a fine-tune of --model (`foresplat train --model ...` writes OUT/head)."""
    onnx: str | None = None
    """An exported predictor (`foresplat export`) run with onnxruntime instead of --ckpt (pip install 'foresplat[onnx]')."""
    out: Path = Path("g0.ply")
    """Output .ply; the split and timing go to the same path with suffix .json."""
    sh_degree: int | None = None
    """SH degree of the written .ply (0..3, not below the predictor's): higher bands are zero-padded;
    3 is what the original 3DGS code loads. Default: the predictor's own degree."""
    num_context: int = 12
    """Context views to predict from (0 = every view of the scene)."""
    num_target: int = 4
    """Views held out (not used for the prediction; their indices are recorded)."""
    split: Literal["random", "even", "first"] = "even"
    """How views are split (foresplat.data.split_views); the default is the same in predict, refine and eval."""
    split_seed: int = 0
    """Seed of the random split."""
    width: int | None = None
    """Resize the views to this width first (height follows the aspect ratio if not given)."""
    height: int | None = None
    """Resize the views to this height first (width follows the aspect ratio if not given)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Device to run the predictor on ("auto" = cuda when available)."""
    consistent: float | None = None
    """Keep only the Gaussians another context view confirms at the same depth within this relative
    tolerance (foresplat.models.filters; 0.15 is what docs/REAL.md measures). None: keep all."""
    foreground: bool = False
    """Drop the Gaussians of the background colour `foresplat refine` composites onto (a masked scene's
    uniform background, else black; foresplat.models.filters.keep_foreground)."""


def fit_to_divisor(scene: Scene, divisor: int) -> Scene:
    """The scene resized down to the nearest multiples of `divisor` (unchanged if it already fits)."""
    w, h = max(divisor, scene.width // divisor * divisor), max(divisor, scene.height // divisor * divisor)
    return scene if (w, h) == (scene.width, scene.height) else scene.resized(w, h)


def run(cmd: PredictCommand) -> int:
    """Runs the command (see module docstring); returns the exit code."""
    from foresplat.data.spec import load_scene_spec, resize_to
    from foresplat.io import atomic_write_json, check_output_path, sidecar_record, write_ply
    from foresplat.models import Predictor

    check_output_path(cmd.out, sidecars={Path(cmd.out).with_suffix(".json"): "foresplat predict"})
    device = cmd.device if cmd.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if cmd.onnx is not None:
        from foresplat.export.scene_predict import OnnxSceneModel

        if cmd.ckpt is not None or cmd.model is not None:
            raise ValueError("--onnx: give either --onnx or --ckpt / --model, not both")
        model, device = OnnxSceneModel(cmd.onnx), "cpu (onnxruntime)"
    elif cmd.model is not None:
        from foresplat.models.adapter import load_adapter

        if cmd.weights is None:
            raise ValueError(f"--model {cmd.model}: give its local weights with --weights PATH")
        model = load_adapter(cmd.model, cmd.weights, cmd.head).to(device).eval()
    elif cmd.weights is not None or cmd.head is not None:
        raise ValueError("--weights/--head: only with --model NAME (for a predictor checkpoint use --ckpt PATH)")
    else:  # no --ckpt: the predictor shipped with the package (foresplat.models.pretrained)
        model = Predictor.from_checkpoint(cmd.ckpt or "default", map_location=device).eval()
    scene = load_scene_spec(cmd.scene, num_views=max(16, cmd.num_context + cmd.num_target))
    from foresplat.limits import check_memory, predict_bytes, resized_size

    w, h = resized_size(scene.width, scene.height, cmd.width, cmd.height)
    views = scene.num_views if cmd.num_context == 0 else min(cmd.num_context, scene.num_views)
    check_memory(predict_bytes(model, scene.num_views, views, w, h),
                 f"predict from {views} views at {w}x{h} px")
    scene = fit_to_divisor(resize_to(scene, cmd.width, cmd.height), model.divisor).validate()
    if cmd.num_context == 0:
        context, ctx_idx, tgt_idx = scene, list(range(scene.num_views)), []
    else:
        split = split_views(scene, cmd.num_context, cmd.num_target, cmd.split, cmd.split_seed)
        context, ctx_idx, tgt_idx = split.context, split.context_indices, split.target_indices
    t0 = time.perf_counter()
    g = model.predict(context).detach().to(device="cpu", dtype=torch.float32)
    seconds = time.perf_counter() - t0
    predicted = g.num
    from foresplat.models.filters import filter_prediction
    from foresplat.refine.init import scene_background

    try:
        g = filter_prediction(g, context, consistent=cmd.consistent, foreground=cmd.foreground,
                              background=scene_background(context))
    except ValueError as e:
        raise ValueError(f"--consistent/--foreground: {e}") from None
    out = Path(cmd.out)
    if cmd.sh_degree is not None:
        from foresplat.io import pad_sh_degree

        try:
            g = pad_sh_degree(g, cmd.sh_degree)
        except ValueError as e:
            raise ValueError(f"--sh-degree: {e}") from None
    write_ply(out, g)
    atomic_write_json(out.with_suffix(".json"), {
        "scene": scene.name, "scene_spec": cmd.scene, "ckpt": cmd.ckpt and str(cmd.ckpt), "width": scene.width,
        "height": scene.height, "context_indices": ctx_idx, "target_indices": tgt_idx,
        "split": cmd.split, "split_seed": cmd.split_seed, "num_gaussians": g.num,
        "sh_degree": g.sh_degree, "predict_seconds": seconds, "device": device,
        **({"consistent": cmd.consistent, "foreground": cmd.foreground, "num_predicted": predicted}
           if cmd.consistent is not None or cmd.foreground else {}),
        **({"model": cmd.model, "weights": cmd.weights, "head": cmd.head} if cmd.model else {}),
        **({"onnx": cmd.onnx} if cmd.onnx else {}),
        **({"camera_alignment": model.last_alignment[0].summary()}
           if getattr(model, "last_alignment", None) else {}),
        **sidecar_record("foresplat predict", out)})
    print(f"{out}: {g.num} Gaussians from {context.num_views} views of {scene.name} "
          f"({scene.width}x{scene.height}) in {seconds:.2f} s")
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `foresplat predict`."""
    from foresplat.commands._vocab import modernize

    return run(tyro.cli(PredictCommand, args=modernize("predict", argv), prog="foresplat predict"))
