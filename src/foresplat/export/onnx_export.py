"""Export a foresplat `Predictor` (backbone + Gaussian head) to ONNX.

    report = export_onnx(predictor, "model.onnx", ExportConfig(height=64, width=64, num_views=6))

Graph inputs  images [B,V,H,W,3] float32 in [0,1], viewmats [B,V,4,4] (OpenCV world-to-camera),
              Ks [B,V,3,3] (pixels, centres at +0.5), near [B], far [B]
Graph outputs means [B,N,3], quats [B,N,4], log_scales [B,N,3], opacity_logits [B,N], sh [B,N,K,3]
              (raw Gaussian parameters, as Predictor.forward; N = V H/s W/s, s = prediction stride)

The graph comes from torch.export (dynamo) with the ops ONNX lacks swapped for exact equivalents
(foresplat.export.onnx_ops). Dynamic axes: views V >= num_sources + 1 (the number of matched source
views per view is unrolled in the graph), H and W any multiples of the predictor's divisor. The
batch B is fixed to 1. Metadata (sizes, divisor, SH degree, normalisation, config) is written to the
model's metadata_props (`read_metadata`). An operator ONNX cannot express fails with an
`OnnxExportError` naming the operator and the layer (module path) that uses it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foresplat.export.onnx_ops import onnx_compatible_ops
from foresplat.export.runtime import INPUT_NAMES, OUTPUT_NAMES
from foresplat.models.predictor import Predictor

METADATA_PREFIX = "foresplat."
ONNX_SCHEMA = 1
"""Version of the exported graph's interface (inputs, outputs, metadata keys)."""


class OnnxExportError(ValueError):
    """The model could not be expressed in ONNX (the message names the operator and the layer)."""


def require_onnx() -> None:
    """Raises MissingOnnxExtra with the install hint when the onnx extra is missing."""
    from foresplat.export.runtime import MissingOnnxExtra

    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ModuleNotFoundError as e:
            raise MissingOnnxExtra(f"ONNX export needs the package {module!r}: pip install 'foresplat[onnx]'") from e


@dataclass
class ExportConfig:
    """How to trace the predictor: the example input size and which axes stay dynamic."""

    height: int = 64
    """Height of the example views (a multiple of the divisor); the graph accepts other heights when dynamic."""
    width: int = 64
    """Width of the example views (a multiple of the divisor)."""
    num_views: int = 6
    """Views of the example input (>= num_sources + 1 of the backbone)."""
    dynamic: bool = True
    """Dynamic view count and image size; False = the graph only accepts the example shapes."""
    max_views: int = 256
    """Upper bound of the dynamic view axis."""
    max_size: int = 4096
    """Upper bound of the dynamic height and width, in pixels."""
    opset: int = 18
    """ONNX opset version."""

    def validate(self, predictor: Predictor) -> "ExportConfig":
        """Raises ValueError naming the field when the example input does not fit the predictor."""
        d = predictor.divisor
        for f in ("height", "width"):
            v = getattr(self, f)
            if v < d or v % d:
                raise ValueError(f"ExportConfig.{f}: expected a positive multiple of the predictor's divisor {d}, got {v}")
        lo = min_views(predictor)
        if not lo <= self.num_views <= self.max_views:
            raise ValueError(f"ExportConfig.num_views: expected {lo} <= num_views <= max_views={self.max_views} "
                             f"(the graph unrolls {lo - 1} source views per view), got {self.num_views}")
        if self.max_size < max(self.height, self.width):
            raise ValueError(f"ExportConfig.max_size: expected >= the example size, got {self.max_size}")
        if self.opset < 18:
            raise ValueError(f"ExportConfig.opset: the dynamo exporter needs opset >= 18, got {self.opset}")
        return self


def min_views(predictor: Predictor) -> int:
    """Smallest view count the exported graph accepts (each view is matched against num_sources others)."""
    return int(getattr(predictor.config.backbone, "num_sources", 1)) + 1


class PredictorGraph(nn.Module):
    """What is exported: Predictor.forward without its Python-side input checks, returning the five
    raw Gaussian tensors (means, quats, log_scales, opacity_logits, sh) instead of a Gaussians object."""

    def __init__(self, predictor: Predictor):
        super().__init__()
        self.predictor = predictor

    def forward(self, images: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, near: torch.Tensor,
                far: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """See module docstring (inputs and outputs)."""
        p = self.predictor
        feats = p.backbone(images, viewmats, Ks, near, far)
        return p.head(feats, images, viewmats, Ks, near, far).tensors()


def example_inputs(predictor: Predictor, views: int, height: int, width: int,
                   seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random but valid predictor inputs with B = 1: images [1,V,H,W,3], cameras on an arc looking at
    the origin, Ks with the principal point at the centre, near 0.5, far 20 (float32, CPU)."""
    from foresplat.cameras import look_at

    g = torch.Generator().manual_seed(seed)
    images = torch.rand(1, views, height, width, 3, generator=g)
    angle = torch.linspace(-0.6, 0.6, views)
    eye = torch.stack([4 * torch.sin(angle), 0.3 * torch.randn(views, generator=g), -4 * torch.cos(angle)], -1)
    viewmats = look_at(eye, torch.zeros(views, 3), torch.tensor([0.0, -1.0, 0.0]).expand(views, 3))
    f = 0.9 * max(height, width)
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    return (images, viewmats[None].float(), K.expand(1, views, 3, 3).clone(), torch.tensor([0.5]),
            torch.tensor([20.0]))


def _dynamic_shapes(predictor: Predictor, config: ExportConfig) -> dict[str, Any] | None:
    if not config.dynamic:
        return None
    from torch.export import Dim

    d = predictor.divisor
    views = Dim("views", min=min_views(predictor), max=config.max_views)
    hq = Dim("height_blocks", min=1, max=config.max_size // d)
    wq = Dim("width_blocks", min=1, max=config.max_size // d)
    return {"images": {1: views, 2: d * hq, 3: d * wq}, "viewmats": {1: views}, "Ks": {1: views},
            "near": None, "far": None}


def export_metadata(predictor: Predictor, config: ExportConfig) -> dict[str, str]:
    """The metadata_props written into the model (all values strings, keys prefixed 'foresplat.')."""
    from foresplat import __version__

    fixed = "batch (B = 1)" if config.dynamic else "batch, views, height and width"
    meta = {
        "onnx_schema": ONNX_SCHEMA, "foresplat_version": __version__,
        "inputs": ", ".join(INPUT_NAMES), "outputs": ", ".join(OUTPUT_NAMES),
        "image_height": config.height, "image_width": config.width, "num_views": config.num_views,
        "dynamic": config.dynamic, "fixed_axes": fixed, "min_views": min_views(predictor),
        "max_views": config.max_views if config.dynamic else config.num_views,
        "divisor": predictor.divisor, "prediction_stride": predictor.prediction_stride,
        "sh_degree": predictor.config.head.sh_degree,
        "normalisation": "images RGB float32 in [0, 1], layout [B, V, H, W, 3]; the graph applies "
                         "(x - 0.45) / 0.25 itself",
        "cameras": "viewmats OpenCV world-to-camera [B,V,4,4]; Ks pixel intrinsics [B,V,3,3], pixel centres at +0.5",
        "scene_normalisation": "as Predictor.predict: feed the scene in its normalised frame x' = s (x - c), "
                               "c = mean camera centre, s = 1 / sqrt(near far) (near, far, camera translations "
                               "scaled), then map the Gaussians back: means / s + c, log_scales - log s",
        "num_parameters": predictor.num_parameters(), "predictor_config": json.dumps(predictor.config.to_dict()),
    }
    return {METADATA_PREFIX + k: (json.dumps(v) if isinstance(v, bool) else str(v)) for k, v in meta.items()}


def _layer_of_failure(program: Any, error: BaseException) -> str:
    """'operator X in layer Y (file:line)' for a failed ONNX translation, from the exported program."""
    text = " | ".join(str(e) for e in _chain(error))
    node_name = re.search(r"translating node %(\w+)", text)
    op = re.search(r"op='([\w.]+)'", text)
    op_name = op.group(1) if op else (node_name.group(1) if node_name else "unknown")
    nodes = [n for n in program.graph.nodes if n.op == "call_function"]
    short = _op_stem(op_name)

    def related(n) -> bool:  # the exporter's decomposed op vs the traced (higher-level) op
        stem = _op_stem(str(n.target))
        return bool(short) and (short in stem or stem in short)

    hit = next((n for n in nodes if node_name and n.name == node_name.group(1)), None)
    hit = hit or next((n for n in nodes if related(n)), None)
    if hit is None:
        return f"operator {op_name} (layer not found in the traced graph)"
    stack = hit.meta.get("nn_module_stack") or {}
    path, cls = list(stack.values())[-1] if stack else ("", "the top-level module")
    layer = f"{path or '<root>'} ({cls})" if stack else cls
    trace = (hit.meta.get("stack_trace") or "").strip().splitlines()
    where = next((ln.strip() for ln in reversed(trace) if ln.strip().startswith("File ")), "")
    return f"operator {op_name} in layer {layer}" + (f", {where}" if where else "")


def _op_stem(target: str) -> str:
    """'aten._cdist_forward.default' -> 'cdist', 'prims.bessel_j0' -> 'bessel_j0' (for matching)."""
    parts = target.split(".")
    name = parts[1] if len(parts) > 1 else parts[0]
    name = name.strip("_").removeprefix("special_").removesuffix("_forward")
    return name


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def export_module(module: nn.Module, args: tuple[torch.Tensor, ...], path: str | os.PathLike, *,
                  input_names: tuple[str, ...], output_names: tuple[str, ...],
                  dynamic_shapes: dict[str, Any] | None = None, opset: int = 18,
                  metadata: dict[str, str] | None = None) -> Path:
    """torch.export + ONNX translation of `module` on `args`, written atomically to `path` as one file.

    Raises OnnxExportError naming the operator and the layer when a node has no ONNX translation."""
    require_onnx()
    import onnx

    from foresplat.io.atomic import atomic_write

    module = module.eval()
    with onnx_compatible_ops(), torch.no_grad():
        try:
            program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
        except Exception as e:
            raise OnnxExportError(f"{path}: torch.export could not trace {type(module).__name__}: "
                                  f"{str(e).strip().splitlines()[0]}") from e
        try:
            onnx_program = torch.onnx.export(program, dynamo=True, opset_version=opset, input_names=list(input_names),
                                             output_names=list(output_names), verbose=False)
        except Exception as e:
            raise OnnxExportError(f"{path}: cannot export to ONNX opset {opset}: {_layer_of_failure(program, e)}") \
                from e
    model = onnx_program.model_proto
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    out = Path(path)
    with atomic_write(out) as tmp:
        onnx.save_model(model, str(tmp))
    return out


def export_onnx(predictor: Predictor, path: str | os.PathLike, config: ExportConfig | None = None) -> Path:
    """Exports `predictor` (see module docstring) to `path` (.onnx, one file, weights inside)."""
    config = (config or ExportConfig()).validate(predictor)
    predictor = predictor.to("cpu", torch.float32).eval()
    args = example_inputs(predictor, config.num_views, config.height, config.width)
    return export_module(PredictorGraph(predictor), args, path, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                         dynamic_shapes=_dynamic_shapes(predictor, config), opset=config.opset,
                         metadata=export_metadata(predictor, config))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The 'foresplat.*' metadata_props of an exported model, prefix removed (FileNotFoundError / ValueError)."""
    require_onnx()
    import onnx

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such ONNX model")
    try:
        model = onnx.load_model(str(p), load_external_data=False)
    except Exception as e:
        raise ValueError(f"{p}: not a readable ONNX model ({type(e).__name__})") from e
    return {e.key[len(METADATA_PREFIX):]: e.value for e in model.metadata_props if e.key.startswith(METADATA_PREFIX)}


def config_summary(config: ExportConfig) -> dict[str, Any]:
    """The export settings as a plain dict (for logs and JSON sidecars)."""
    return asdict(config)
