"""The vggt adapter (VGGT's weights in ffgs's AnySplat network, a new Gaussian head): loading VGGT-named
weights strictly, the frozen part equal to the source, a deterministic new head, head round trip, MetaGrad."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

if importlib.util.find_spec("ffgs") is None:
    pytest.skip("optional package ffgs (foresplat[anysplat]) is not installed", allow_module_level=True)

from safetensors.torch import save_file  # noqa: E402

from adapter_helpers import pose_free_metagrad_config, scene_at_predicted_cameras  # noqa: E402
from foresplat.data.scene import split_views  # noqa: E402
from foresplat.models.adapter import load_adapter  # noqa: E402
from foresplat.models.adapters.anysplat import AnySplatAdapter  # noqa: E402
from foresplat.models.adapters.finetune import finetune_head  # noqa: E402
from foresplat.models.adapters.tiny import TINY_ANYSPLAT, tiny_anysplat  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")

@pytest.fixture(scope="module")
def vggt_weights(tmp_path_factory):
    """A tiny VGGT checkpoint the way VGGT names it (aggregator / camera_head / depth_head, plus the
    point and track heads the adapter skips), and the network it came from."""
    src = tiny_anysplat(7, voxelize=False)
    enc = src.encoder
    state = {}
    for part in ("aggregator", "camera_head", "depth_head"):
        state.update({f"{part}.{k}": v.float().contiguous() for k, v in getattr(enc, part).state_dict().items()})
    state["point_head.scratch.weight"] = torch.zeros(3)
    state["track_head.fnet.weight"] = torch.zeros(2)
    d = tmp_path_factory.mktemp("vggt")
    save_file(state, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps({**TINY_ANYSPLAT, "voxelize": False}))
    return d, src, state


def test_vggt_weights_fill_the_frozen_part_and_the_new_head_is_deterministic(vggt_weights):
    d, src, _ = vggt_weights
    a, b = load_adapter("vggt", d), load_adapter("vggt", d)
    enc = a.model.encoder
    for part in ("aggregator", "camera_head", "depth_head"):
        mine, theirs = getattr(enc, part).state_dict(), getattr(src.encoder, part).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), part
    head_a, head_b = a.head.state_dict(), b.head.state_dict()
    assert all(torch.equal(head_a[k], head_b[k]) for k in head_a)  # the same new head every load
    assert any(not torch.equal(head_a[k], v) for k, v in src.encoder.gaussian_param_head.state_dict().items())
    images = torch.rand(1, 2, 28, 28, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fa, fs = a.encode(images), AnySplatAdapter(src).encode(images)
    assert torch.equal(fa.pred_c2w, fs.pred_c2w) and torch.equal(fa.points, fs.points)
    assert a(images).num == 2 * 28 * 28


def test_vggt_loading_is_strict_on_the_parts_it_uses(vggt_weights, tmp_path):
    d, _, state = vggt_weights
    (tmp_path / "config.json").write_text((d / "config.json").read_text())
    broken = {k: v for k, v in state.items() if not k.startswith("depth_head.scratch")}
    save_file(broken, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"weights do not match VGGT's .* missing \(e.g. \['depth_head.scratch"):
        load_adapter("vggt", tmp_path)
    save_file({**state, "extra_head.w": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="1 unexpected"):
        load_adapter("vggt", tmp_path)


def test_fine_tuned_head_round_trip_and_metagrad_touches_only_the_head(vggt_weights, tmp_path):
    d, _, _ = vggt_weights
    adapter = load_adapter("vggt", d)
    split = split_views(scene_at_predicted_cameras(adapter), num_context=2, num_target=2, rule="first")
    before = adapter.backbone_digest()
    logs = finetune_head(adapter, [split], pose_free_metagrad_config())
    assert all(math.isfinite(x["loss"]) and x["grad_norm"] > 0 for x in logs)
    assert adapter.backbone_digest() == before
    adapter.save_head(tmp_path / "head")
    again = load_adapter("vggt", d, head=tmp_path / "head")
    mine, theirs = again.head.state_dict(), adapter.head.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert any(not torch.equal(mine[k], v) for k, v in load_adapter("vggt", d).head.state_dict().items())
    with pytest.raises(ValueError, match="a head of model 'vggt', not of 'anysplat'"):
        AnySplatAdapter(again.model).load_head(tmp_path / "head")
