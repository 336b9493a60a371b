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

from foresplat.cameras import Cameras  # noqa: E402
from foresplat.data.scene import Scene, split_views  # noqa: E402
from foresplat.meta import RuleConfig  # noqa: E402
from foresplat.models.adapter import load_adapter  # noqa: E402
from foresplat.models.adapters.anysplat import AnySplatAdapter, ffgs_anysplat  # noqa: E402
from foresplat.models.adapters.finetune import HeadFinetuneConfig, finetune_head  # noqa: E402
from foresplat.refine import RefineConfig  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")

TINY = dict(img_size=56, patch_size=14, embed_dim=32, intermediate_layer_idx=[0, 1, 2, 3], voxelize=False,
            aggregator=dict(depth=4, num_heads=2, patch_embed="conv"),
            camera_head=dict(trunk_depth=1, num_heads=2),
            depth_head=dict(intermediate_layer_idx=[0, 1, 2, 3], features=16, out_channels=[8, 16, 32, 32]),
            gs_head=dict(intermediate_layer_idx=[0, 1, 2, 3], out_channels=[8, 16, 32, 32]))


@pytest.fixture(scope="module")
def vggt_weights(tmp_path_factory):
    """A tiny VGGT checkpoint the way VGGT names it (aggregator / camera_head / depth_head, plus the
    point and track heads the adapter skips), and the network it came from."""
    torch.manual_seed(7)
    src = ffgs_anysplat()["modeling"].AnySplat(**TINY).eval()
    enc = src.encoder
    state = {}
    for part in ("aggregator", "camera_head", "depth_head"):
        state.update({f"{part}.{k}": v.float().contiguous() for k, v in getattr(enc, part).state_dict().items()})
    state["point_head.scratch.weight"] = torch.zeros(3)
    state["track_head.fnet.weight"] = torch.zeros(2)
    d = tmp_path_factory.mktemp("vggt")
    save_file(state, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(TINY))
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
    size, views = 28, 4
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = torch.stack([xx, yy, 0.5 * (xx + yy)], -1).expand(views, size, size, 3).clone()
    images = images * (0.5 + 0.5 * torch.rand(views, 1, 1, 1, generator=torch.Generator().manual_seed(0)))
    f = adapter.encode(images[None, :2])  # the context views' cameras as predicted, for a well-posed fit
    c2w = f.pred_c2w[0].repeat(2, 1, 1)
    scene = Scene(images, Cameras(torch.linalg.inv(c2w), f.pred_Ks[0].repeat(2, 1, 1), size, size), "ramp",
                  near=0.05, far=50.0)
    split = split_views(scene, num_context=2, num_target=2, rule="first")
    before = adapter.backbone_digest()
    rule = RuleConfig(name="metagrad", lam=0.0, k_min=2, k_max=2, stride=2, backend="reference",
                      anchor_views="context", refine=RefineConfig(backend="reference"))
    logs = finetune_head(adapter, [split], HeadFinetuneConfig(rule=rule, iterations=2, lr=1e-3))
    assert all(math.isfinite(x["loss"]) and x["grad_norm"] > 0 for x in logs)
    assert adapter.backbone_digest() == before
    adapter.save_head(tmp_path / "head")
    again = load_adapter("vggt", d, head=tmp_path / "head")
    mine, theirs = again.head.state_dict(), adapter.head.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert any(not torch.equal(mine[k], v) for k, v in load_adapter("vggt", d).head.state_dict().items())
    with pytest.raises(ValueError, match="a head of model 'vggt', not of 'anysplat'"):
        AnySplatAdapter(again.model).load_head(tmp_path / "head")
