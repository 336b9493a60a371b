"""ONNX export (foresplat export), the onnxruntime runner and int8 quantisation.

One predictor is exported once per module (through the CLI, dynamic views and size, with its int8
copy); every comparison then runs the PyTorch predictor and onnxruntime on the same inputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from foresplat.export import (OnnxExportError, OnnxPredictor, PredictorGraph, example_inputs,  # noqa: E402
                              export_module, read_metadata)
from foresplat.export.onnx_ops import area_resize, inverse, pairwise_distance  # noqa: E402
from foresplat.export.scene_predict import predict_scene_onnx  # noqa: E402
from foresplat.models import Predictor, PredictorConfig  # noqa: E402

MEANS_TOL = 1e-4  # scene units; the documented tolerance of the float32 graph
OTHER_TOL = 1e-4  # raw quats, log-scales, opacity logits, SH


# ---- the op replacements --------------------------------------------------------------------------
def test_closed_form_inverse_matches_linalg_inv():
    g = torch.Generator().manual_seed(0)
    for n in (3, 4):
        m = torch.randn(5, 2, n, n, generator=g, dtype=torch.float64) + 3 * torch.eye(n, dtype=torch.float64)
        assert torch.allclose(inverse(m), torch.linalg.inv(m), atol=1e-10)
    with pytest.raises(ValueError, match="expected"):
        inverse(torch.eye(2))


def test_pairwise_distance_and_area_resize_match_torch():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 5, 3, generator=g), torch.randn(2, 7, 3, generator=g)
    assert torch.allclose(pairwise_distance(x, y), torch.cdist(x, y), atol=1e-5)
    img = torch.rand(3, 4, 16, 24, generator=g)
    ref = torch.nn.functional.interpolate(img, size=(8, 6), mode="area")
    assert torch.allclose(area_resize(img, (8, 6)), ref, atol=1e-6)


def test_unsupported_operator_names_the_layer(tmp_path):
    class Odd(torch.nn.Module):
        def forward(self, x):
            return torch.special.bessel_j0(x)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)
            self.odd_layer = Odd()

        def forward(self, x):
            return self.odd_layer(self.lin(x))

    with pytest.raises(OnnxExportError, match=r"bessel_j0.*layer odd_layer \(.*Odd\)"):
        export_module(Net(), (torch.rand(2, 3),), tmp_path / "x.onnx", input_names=("x",), output_names=("y",))
    assert not (tmp_path / "x.onnx").exists()


# ---- one exported predictor -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(predictor, fp32 path, int8 path): a seeded edge-t predictor exported by `foresplat export`."""
    from foresplat.commands.export import main

    torch.manual_seed(3)
    model = Predictor(PredictorConfig.preset("edge-t")).eval()
    with torch.no_grad():  # move the untrained head off its tiny init so every output matters
        for p in model.head.out.parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = tmp_path_factory.mktemp("onnx")
    model.save(d / "model")
    rc = main(["--ckpt", str(d / "model"), "--onnx", str(d / "m.onnx"), "--height", "32", "--width", "32",
               "--num-views", "4", "--int8", str(d / "m8.onnx")])
    assert rc == 0
    return model, d / "m.onnx", d / "m8.onnx"


def _compare(model, runner, args):
    with torch.no_grad():
        ref = PredictorGraph(model)(*args)
    out = runner.run(*(a.numpy() for a in args))
    return {k: float(np.abs(v - r.numpy()).max()) for (k, v), r in zip(out.items(), ref)}, out, ref


@pytest.mark.slow
@pytest.mark.parametrize("views,height,width", [(4, 32, 32), (3, 48, 64), (7, 64, 40)])
def test_onnxruntime_equals_pytorch_on_random_inputs(exported, views, height, width):
    model, path, _ = exported
    diffs, out, _ = _compare(model, OnnxPredictor(path), example_inputs(model, views, height, width, seed=views))
    assert out["means"].shape == (1, views * height // 2 * width // 2, 3)
    assert diffs["means"] < MEANS_TOL, diffs
    assert max(diffs.values()) < OTHER_TOL, diffs


@pytest.mark.slow
def test_onnxruntime_equals_pytorch_on_fern(exported, shared_data):
    from foresplat.data import load_scene
    from foresplat.data.spec import resize_to

    model, path, _ = exported
    scene = resize_to(load_scene(shared_data / "llff_fern", downscale=8), 64, None).subset([0, 3, 6, 9, 12, 15])
    assert scene.width == 64 and scene.height % model.divisor == 0
    g_onnx = predict_scene_onnx(OnnxPredictor(path), scene)
    g_torch = model.predict(scene)
    for name, a, b in zip(("means", "quats", "log_scales", "opacity_logits", "sh"), g_onnx.tensors(), g_torch.tensors()):
        # float32 rounding grows with the coordinates (fern's means reach ~65 units): 2e-6 relative, >= 1e-4
        tol = max(MEANS_TOL, 2e-6 * float(b.abs().max())) if name == "means" else OTHER_TOL
        assert float((a - b).abs().max()) < tol, name


@pytest.mark.slow
def test_metadata_and_runner_checks(exported):
    model, path, _ = exported
    meta = read_metadata(path)
    assert meta["divisor"] == str(model.divisor) and meta["sh_degree"] == "1"
    assert meta["min_views"] == "3" and meta["dynamic"] == "true" and meta["fixed_axes"] == "batch (B = 1)"
    assert PredictorConfig.from_dict(__import__("json").loads(meta["predictor_config"])) == model.config
    runner = OnnxPredictor(path)
    args = [a.numpy() for a in example_inputs(model, 2, 32, 32)]
    with pytest.raises(ValueError, match="images: .*takes 3..256 views, got 2"):
        runner.run(*args)
    args = [a.numpy() for a in example_inputs(model, 4, 36, 32)]
    with pytest.raises(ValueError, match="multiples of 8"):
        runner.run(*args)
    args[0] = args[0][:, :, :32]
    args[2] = args[2][:, :3]
    with pytest.raises(ValueError, match=r"Ks: expected shape \[1, 4, 3, 3\]"):
        runner.run(*args)


@pytest.mark.slow
def test_int8_model_is_smaller_and_close(exported):
    model, path, path8 = exported
    assert read_metadata(path8)["quantization"].startswith("dynamic-int8")
    saved = path.stat().st_size - path8.stat().st_size  # int8 weights: ~3 bytes saved per float32 weight
    assert saved > 2 * model.num_parameters(), saved
    diffs, out, ref = _compare(model, OnnxPredictor(path8), example_inputs(model, 4, 32, 32, seed=5))
    assert all(np.isfinite(v).all() for v in out.values())
    assert 0 < diffs["means"] < 0.2, diffs  # quantised: not bit-equal, but near (cameras 4 units away)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such ONNX model"):
        OnnxPredictor(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.onnx: onnxruntime cannot load it"):
        OnnxPredictor(bad)


@pytest.mark.slow
def test_predict_cli_onnx_writes_the_same_ply(exported, tmp_path):
    from foresplat.commands.predict import main
    from foresplat.io import read_ply

    _, path, _ = exported
    common = ["synthetic:2", "--num-context", "4", "--num-target", "2", "--width", "32"]
    assert main([*common, "--ckpt", str(path.parent / "model"), "--out", str(tmp_path / "torch.ply")]) == 0
    assert main([*common, "--onnx", str(path), "--out", str(tmp_path / "onnx.ply")]) == 0
    a, b = read_ply(tmp_path / "torch.ply"), read_ply(tmp_path / "onnx.ply")
    assert a.num == b.num == 4 * 16 * 16
    for name, x, y in zip(("means", "quats", "log_scales", "opacity_logits", "sh"), a.tensors(), b.tensors()):
        assert float((x - y).abs().max()) < 1e-4, name
    assert json.loads((tmp_path / "onnx.json").read_text())["onnx"] == str(path)
    with pytest.raises(ValueError, match="--onnx: give either"):
        main([*common, "--onnx", str(path), "--ckpt", "x", "--out", str(tmp_path / "x.ply")])


def test_missing_extra_is_a_one_line_cli_error(monkeypatch, tmp_path, capsys):
    import sys

    from foresplat.cli import main

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ModuleNotFoundError
    rc = main(["predict", "synthetic:0", "--onnx", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "g.ply")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "pip install 'foresplat[onnx]'" in err[0]
