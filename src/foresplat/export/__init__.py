"""Deployment: ONNX export of a predictor, an onnxruntime runner and int8 quantisation.

    from foresplat.export import ExportConfig, export_onnx, OnnxPredictor, quantize_int8
    export_onnx(predictor, "model.onnx", ExportConfig(height=64, width=64))
    out = OnnxPredictor("model.onnx").run(images, viewmats, Ks, near, far)   # numpy arrays

Needs the optional packages of `pip install 'foresplat[onnx]'` (onnx, onnxscript, onnxruntime).
"""

from foresplat.export.onnx_export import (ExportConfig, OnnxExportError, PredictorGraph, example_inputs, export_module,
                                          export_onnx, read_metadata)
from foresplat.export.quantize import quantize_int8
from foresplat.export.runtime import MissingOnnxExtra, OnnxPredictor

__all__ = ["ExportConfig", "MissingOnnxExtra", "OnnxExportError", "OnnxPredictor", "PredictorGraph", "example_inputs", "export_module",
           "export_onnx", "quantize_int8", "read_metadata"]
