"""Dynamic int8 quantisation of an exported predictor (onnxruntime.quantization).

Weights of Conv / MatMul / Gemm nodes are stored as 8-bit integers and activations quantised on the
fly per tensor; geometry (camera inverses, warps, the Gaussian decoding) stays float32.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Writes the dynamically quantised copy of ONNX model `src` to `dst` (metadata kept, plus
    foresplat.quantization = "dynamic-int8"); returns dst."""
    from foresplat.export.runtime import require_onnxruntime

    require_onnxruntime()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from foresplat.io.atomic import atomic_write

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such ONNX model")
    with atomic_write(dst) as tmp:
        # uint8 weights: onnxruntime's CPU ConvInteger kernel takes uint8 (signed weights are not implemented)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # onnxruntime logs a generic "consider pre-processing" warning here
        try:
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QUInt8)
        finally:
            root.setLevel(level)
        model = onnx.load_model(str(tmp))
        entry = model.metadata_props.add()
        entry.key, entry.value = "foresplat.quantization", "dynamic-int8 (uint8 weights, per-tensor)"
        onnx.save_model(model, str(tmp))
    return dst
