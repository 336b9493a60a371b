"""Run an exported predictor with onnxruntime (numpy in, numpy out; no PyTorch needed).

    runner = OnnxPredictor("model.onnx")
    out = runner.run(images [1,V,H,W,3], viewmats [1,V,4,4], Ks [1,V,3,3], near [1], far [1])
    out["means"] [1,N,3], out["quats"] [1,N,4], out["log_scales"] [1,N,3], out["opacity_logits"] [1,N],
    out["sh"] [1,N,K,3]   (raw Gaussian parameters, as Predictor.forward)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

INPUT_NAMES = ("images", "viewmats", "Ks", "near", "far")
OUTPUT_NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh")


class MissingOnnxExtra(ModuleNotFoundError, ValueError):
    """An optional package of `foresplat[onnx]` is missing (a ValueError too: the CLI reports it in one line)."""


def require_onnxruntime():
    """The onnxruntime module, or MissingOnnxExtra with the install hint."""
    try:
        import onnxruntime
    except ModuleNotFoundError as e:
        raise MissingOnnxExtra("running an ONNX model needs the package 'onnxruntime': "
                               "pip install 'foresplat[onnx]'") from e
    return onnxruntime


class OnnxPredictor:
    """An exported foresplat predictor in an onnxruntime session (CPU), with its metadata."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        ort = require_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX model")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ValueError(f"{self.path}: onnxruntime cannot load it: {str(e).strip().splitlines()[0]}") from e
        names = tuple(i.name for i in self.session.get_inputs())
        if names != INPUT_NAMES:
            raise ValueError(f"{self.path}: expected graph inputs {list(INPUT_NAMES)} (a foresplat export), got {list(names)}")
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k[len("foresplat."):]: v for k, v in props.items() if k.startswith("foresplat.")}
        if "divisor" not in self.metadata:
            raise ValueError(f"{self.path}: no foresplat metadata (foresplat.divisor); export it with `foresplat export`")
        self.divisor = int(self.metadata["divisor"])
        self.min_views = int(self.metadata.get("min_views", 1))
        self.max_views = int(self.metadata.get("max_views", 1 << 30))
        self.sh_degree = int(self.metadata["sh_degree"])
        self.dynamic = self.metadata.get("dynamic") == "true"

    def check(self, images: np.ndarray, viewmats: np.ndarray, Ks: np.ndarray, near: np.ndarray,
              far: np.ndarray) -> None:
        """Raises ValueError naming the array when the inputs do not fit this graph."""
        if images.ndim != 5 or images.shape[0] != 1 or images.shape[-1] != 3:
            raise ValueError(f"images: expected [1, V, H, W, 3], got {list(images.shape)}")
        _, V, H, W, _ = images.shape
        for name, a, shape in (("viewmats", viewmats, (1, V, 4, 4)), ("Ks", Ks, (1, V, 3, 3)),
                               ("near", near, (1,)), ("far", far, (1,))):
            if tuple(a.shape) != shape:
                raise ValueError(f"{name}: expected shape {list(shape)}, got {list(a.shape)}")
            if not np.isfinite(a).all():
                raise ValueError(f"{name}: contains NaN or inf")
        if not self.min_views <= V <= self.max_views:
            raise ValueError(f"images: {self.path.name} takes {self.min_views}..{self.max_views} views, got {V}")
        if H % self.divisor or W % self.divisor:
            raise ValueError(f"images: height and width must be multiples of {self.divisor}, got {H}x{W}")
        if not self.dynamic and (H, W) != (int(self.metadata["image_height"]), int(self.metadata["image_width"])):
            raise ValueError(f"images: {self.path.name} was exported with a fixed size "
                             f"{self.metadata['image_height']}x{self.metadata['image_width']}, got {H}x{W}")
        if float(images.min()) < -1e-3 or float(images.max()) > 1 + 1e-3:
            raise ValueError(f"images: expected values in [0, 1], got [{images.min():.4g}, {images.max():.4g}]")
        if not (0 < near[0] < far[0]):
            raise ValueError(f"near/far: need 0 < near < far, got {near[0]}, {far[0]}")

    def run(self, images: np.ndarray, viewmats: np.ndarray, Ks: np.ndarray, near: np.ndarray,
            far: np.ndarray) -> dict[str, np.ndarray]:
        """Inputs as in the module docstring (any float dtype, converted to float32) -> the five outputs."""
        arrays = [np.ascontiguousarray(np.asarray(a, dtype=np.float32)) for a in (images, viewmats, Ks, near, far)]
        self.check(*arrays)
        outs = self.session.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, arrays)))
        return dict(zip(OUTPUT_NAMES, outs))
