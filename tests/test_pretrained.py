"""The shipped predictor asset and the `default` checkpoint name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from foresplat.models import Predictor, PredictorConfig
from foresplat.models import pretrained

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_write_asset_halves_the_weights_and_records_provenance(tmp_path):
    torch.manual_seed(0)
    model = Predictor(PredictorConfig.preset("edge-t"))
    model.save(tmp_path / "run" / "model", step=7)
    out = pretrained.write_asset(tmp_path / "run" / "model", "foresplat train --preset tiny", tmp_path / "asset")
    from foresplat.io import load_checkpoint

    state, meta = load_checkpoint(out)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert meta["provenance"]["command"] == "foresplat train --preset tiny" and meta["step"] == 7
    loaded = Predictor.from_checkpoint(out)
    assert next(loaded.parameters()).dtype == torch.float32
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-2, atol=1e-3)


def test_default_names_the_shipped_asset(monkeypatch, tmp_path):
    assert pretrained.resolve_checkpoint("runs/x/model") == Path("runs/x/model")
    monkeypatch.setattr(pretrained, "DEFAULT_STEM", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="checkpoint 'default'"):
        Predictor.from_checkpoint("default")


def test_default_is_default_base_with_a_fine_tuned_head():
    assert pretrained.resolve_checkpoint("default-base") == pretrained.BASE_STEM
    shipped = Predictor.from_checkpoint("default").state_dict()
    base = Predictor.from_checkpoint("default-base").state_dict()
    assert shipped.keys() == base.keys()
    changed = {k for k in shipped if not torch.equal(shipped[k], base[k])}
    assert changed and all(k.startswith("head.") for k in changed)  # the backbone is bit-identical
    size = sum(p.with_suffix(".safetensors").stat().st_size for p in (pretrained.DEFAULT_STEM, pretrained.BASE_STEM))
    assert size < 8e6
    from foresplat.experiment import claim_preset

    assert claim_preset("cpu").base == claim_preset("gpu").base == "default-base"  # vanilla vs MetaGrad from one start


def test_shipped_predictor_loads_and_predicts_on_a_real_scene():
    assert pretrained.DEFAULT_STEM.with_suffix(".json").is_file(), "the package must ship its predictor"
    size = pretrained.DEFAULT_STEM.with_suffix(".safetensors").stat().st_size
    assert size < 5e6  # a few MB at most
    model = Predictor.from_checkpoint("default").eval()
    if not (DATA / "llff_fern").is_dir():
        pytest.skip("../shared/data/llff_fern is absent")
    from foresplat.data import load_scene
    from foresplat.evaluate.protocol import prepare_scene

    scene = prepare_scene(load_scene(DATA / "llff_fern"), 64, model.divisor).subset(range(4))
    g = model.predict(scene)
    assert g.num == 4 * (scene.width // model.prediction_stride) * (scene.height // model.prediction_stride)
    assert all(bool(torch.isfinite(t).all()) for t in g.tensors())
    # the Gaussians lie in front of the cameras, inside the scene's bounds
    _, z = scene.cameras.project(g.means.to(scene.cameras.viewmats.dtype))
    assert float((z > 0).float().mean()) > 0.95


def test_refine_init_predicted_uses_the_shipped_predictor():
    from foresplat.data.synthetic import SyntheticConfig, generate_scene
    from foresplat.refine.init import initialize

    scene = generate_scene(1_000_001, SyntheticConfig(width=32, height=32, num_views=3, supersample=1,
                                                      shadow_samples=1, points_per_view=50))
    g = initialize("predicted", scene)
    ref = Predictor.from_checkpoint("default").predict(scene)
    assert torch.allclose(g.means, ref.means, atol=1e-5)
    both = initialize("predicted+points", scene)
    assert both.num == g.num + scene.points.shape[0] and both.sh_degree == g.sh_degree
