"""`foresplat export --ckpt CKPT --onnx model.onnx`: a predictor as an ONNX graph (+ optional int8 copy).

    foresplat export --ckpt runs/demo/model --onnx demo.onnx
    foresplat export --ckpt runs/demo/model --onnx demo.onnx --height 128 --width 128 --int8 demo.int8.onnx
    foresplat predict synthetic:3 --onnx demo.onnx --out g0.ply          # run it with onnxruntime

The graph maps images [1,V,H,W,3], viewmats [1,V,4,4], Ks [1,V,3,3], near [1], far [1] to the raw
Gaussian tensors (see foresplat.export.onnx_export); the view count and the image size stay dynamic
unless --static. Without --no-verify the export is checked against PyTorch on random inputs of the
example size (max abs difference of every output must stay under --tolerance).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass
class ExportCommand:
    """Export a predictor checkpoint to ONNX (needs pip install 'foresplat[onnx]')."""

    ckpt: str
    """Predictor checkpoint (stem, .json or .safetensors), e.g. runs/demo/model."""
    onnx: Path
    """Output .onnx file (weights inside, metadata in metadata_props)."""
    height: int = 64
    """Height of the example views used for tracing (multiple of the predictor's divisor)."""
    width: int = 64
    """Width of the example views used for tracing."""
    num_views: int = 6
    """Views of the example input."""
    static: bool = False
    """Fix the view count and the image size to the example's (default: both dynamic)."""
    opset: int = 18
    """ONNX opset version (>= 18)."""
    int8: Path | None = None
    """Also write a dynamically int8-quantised copy here."""
    verify: bool = True
    """Compare onnxruntime with PyTorch on random inputs after the export."""
    tolerance: float = 1e-4
    """Largest allowed max-abs difference of any output in the verification (float32 graph)."""


def verify_export(predictor, path: Path, views: int, height: int, width: int) -> dict[str, float]:
    """Max abs difference per output between onnxruntime (`path`) and PyTorch on random inputs."""
    import numpy as np
    import torch

    from foresplat.export import OnnxPredictor, PredictorGraph, example_inputs

    args = example_inputs(predictor, views, height, width, seed=1)
    with torch.no_grad():
        ref = PredictorGraph(predictor.eval())(*args)
    out = OnnxPredictor(path).run(*(a.numpy() for a in args))
    return {k: float(np.abs(v - r.numpy()).max()) for (k, v), r in zip(out.items(), ref)}


def run(cmd: ExportCommand) -> int:
    """Runs the command (see module docstring); returns the exit code."""
    from foresplat.export import ExportConfig, export_onnx, quantize_int8
    from foresplat.models import Predictor

    model = Predictor.from_checkpoint(cmd.ckpt).eval()
    config = ExportConfig(height=cmd.height, width=cmd.width, num_views=cmd.num_views, dynamic=not cmd.static,
                          opset=cmd.opset).validate(model)
    t0 = time.perf_counter()
    path = export_onnx(model, cmd.onnx, config)
    size = path.stat().st_size
    print(f"{path}: {model.num_parameters():,} parameters, {size / 1e6:.2f} MB, exported in "
          f"{time.perf_counter() - t0:.1f} s ({'static' if cmd.static else 'dynamic views and size'})")
    if cmd.verify:
        diffs = verify_export(model, path, cmd.num_views, cmd.height, cmd.width)
        worst = max(diffs.values())
        print("onnxruntime vs PyTorch, max abs difference: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
        if not worst <= cmd.tolerance:
            raise ValueError(f"{path}: onnxruntime differs from PyTorch by {worst:.3g} > --tolerance {cmd.tolerance}")
    if cmd.int8 is not None:
        q = quantize_int8(path, cmd.int8)
        print(f"{q}: dynamic int8, {q.stat().st_size / 1e6:.2f} MB")
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `foresplat export`."""
    return run(tyro.cli(ExportCommand, args=argv, prog="foresplat export"))
