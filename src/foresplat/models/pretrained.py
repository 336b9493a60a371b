"""The predictors shipped inside the package, and the names `default` and `default-base` for them.

    resolve_checkpoint("default") -> <package>/assets/edge-r-real      (any other path is returned as is)
    Predictor.from_checkpoint("default")                              the shipped real-capture predictor
    resolve_checkpoint("default-base") -> <package>/assets/edge-r-real-base

`default` is `default-base` with its Gaussian head fine-tuned by MetaGrad (docs/REAL.md); the backbone
weights of the two are identical. `default-base` (the vanilla-trained network) is the base of the
claim experiment's head fine-tunes, which compare vanilla and MetaGrad from the same start.

Wherever a command takes a checkpoint (`predict --ckpt`, `eval --ckpt`, `refine --init ckpt:`),
`default` names the shipped one; `predict` without --ckpt/--model and `refine --init predicted`
use it too. The asset is written from a training run by

    python -m foresplat.models.pretrained RUN/model [--command "the command that trained it"]

which stores the weights in float16 (half the size; loading casts them back to float32) and records
the training command, the run's step and config, and the source checkpoint's sha256 in its JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_NAME = "default"
"""The checkpoint spec that names the shipped predictor."""
ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_STEM = ASSETS / "edge-r-real"
"""The shipped checkpoint pair: edge-r-real.safetensors + edge-r-real.json."""
BASE_NAME = "default-base"
"""The checkpoint spec that names the shipped predictor's base (before the MetaGrad head fine-tune)."""
BASE_STEM = ASSETS / "edge-r-real-base"
"""The base's checkpoint pair: edge-r-real-base.safetensors + .json."""


def resolve_checkpoint(spec: str | os.PathLike) -> Path:
    """`default` / `default-base` -> the shipped checkpoint's stem (FileNotFoundError if this install
    lacks it); any other spec -> Path(spec)."""
    stems = {DEFAULT_NAME: DEFAULT_STEM, BASE_NAME: BASE_STEM}
    if str(spec) not in stems:
        return Path(spec)
    stem = stems[str(spec)]
    if not stem.with_suffix(".json").is_file():
        raise FileNotFoundError(f"checkpoint {str(spec)!r}: the shipped predictor {stem}.json is missing "
                                "from this installation (reinstall foresplat, or give --ckpt PATH)")
    return stem


def write_asset(run_checkpoint: str | os.PathLike, command: str, out_stem: Path = DEFAULT_STEM) -> Path:
    """Copies a trained predictor checkpoint to `out_stem` with float16 weights and its provenance."""
    import torch

    from foresplat.io import load_checkpoint, save_checkpoint
    from foresplat.models.predictor import Predictor

    model = Predictor.from_checkpoint(run_checkpoint)  # validates kind, schema and weights
    _, meta = load_checkpoint(run_checkpoint)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    provenance = {"command": command, "source_step": int(meta.get("step", 0)),
                  "source_safetensors_sha256": meta.get("safetensors_sha256"),
                  "weights_dtype": "float16"}
    save_checkpoint(out_stem, state, {**model.checkpoint_meta(int(meta.get("step", 0))), "provenance": provenance})
    loaded = Predictor.from_checkpoint(out_stem)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        if a.is_floating_point() and not torch.allclose(a, b, rtol=1e-2, atol=1e-3):
            raise ValueError(f"{out_stem}: parameter {k} does not survive float16 storage")
    return out_stem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m foresplat.models.pretrained",
                                     description="Write the shipped predictor asset from a training run.")
    parser.add_argument("checkpoint", help="trained predictor checkpoint (e.g. runs/real/model)")
    parser.add_argument("--command", default="", help="the command that trained it (recorded in the JSON)")
    parser.add_argument("--out", type=Path, default=DEFAULT_STEM, help="output stem (default: the package asset)")
    args = parser.parse_args(argv)
    out = write_asset(args.checkpoint, args.command, args.out)
    size = out.with_suffix(".safetensors").stat().st_size
    print(f"{out}.safetensors ({size / 1e6:.2f} MB) + {out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
