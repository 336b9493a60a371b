"""Depth Anything 3 (optional extra foresplat[da3]): a small DepthAnything3Net of the package's real classes
(ViT-S backbone, narrow heads) with random weights, saved and loaded back, against the net's own forward;
decoding against the package's gs_adapter on random tensors; strict loading; head-only MetaGrad."""

from __future__ import annotations

import importlib.util
import json
import math
from types import SimpleNamespace

import pytest
import torch

if any(importlib.util.find_spec(m) is None for m in ("depth_anything_3", "omegaconf", "addict", "evo", "e3nn")):
    pytest.skip("optional packages of foresplat[da3] (depth-anything-3 and what its model code imports; "
                "e3nn for its SH rotation, the reference here) are not installed", allow_module_level=True)

from safetensors.torch import load_file, save_file, save_model  # noqa: E402

from adapter_helpers import (assert_only_head_changed, covariance, pose_free_metagrad_config,  # noqa: E402
                             quat_to_matrix, scene_at_predicted_cameras)
from foresplat.data.scene import split_views  # noqa: E402
from foresplat.models.adapter import load_adapter  # noqa: E402
from foresplat.models.adapters.da3 import IMAGENET_MEAN, IMAGENET_STD, DA3Adapter, DA3Features, build_net  # noqa: E402
from foresplat.models.adapters.finetune import finetune_head  # noqa: E402
from foresplat.models.adapters.tiny import SMALL_DA3, small_da3  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(the upstream net, a folder with its weights the way the package saves them: "model." keys + config.json)."""
    net = small_da3()
    d = tmp_path_factory.mktemp("da3")
    save_model(torch.nn.ModuleDict({"model": net}), str(d / "model.safetensors"))  # tied weights written once
    (d / "config.json").write_text(json.dumps({"config": SMALL_DA3}))
    return net, d


def assert_matches_upstream(g, up, atol=1e-4):
    """foresplat raw Gaussians [N] vs the package's Gaussians (scales may carry the depth's sign) of one scene."""
    assert torch.allclose(g.means, up.means, atol=atol)
    assert torch.allclose(g.scales(), up.scales.abs(), rtol=1e-4, atol=1e-9)
    assert torch.allclose(g.opacities(), up.opacities, atol=1e-6)
    dots = (g.unit_quats() * torch.nn.functional.normalize(up.rotations, dim=-1)).sum(-1).abs()
    assert torch.allclose(dots, torch.ones_like(dots), atol=1e-4)  # equal up to sign
    assert torch.allclose(g.sh, up.harmonics.transpose(-1, -2), atol=1e-4)
    assert torch.allclose(covariance(quat_to_matrix(g.quats), g.scales()),
                          covariance(quat_to_matrix(up.rotations), up.scales.abs()), atol=1e-6)


def first(up):
    """Scene 0 of the package's batched Gaussians."""
    return SimpleNamespace(**{k: getattr(up, k)[0] for k in ("means", "harmonics", "opacities", "scales", "rotations")})


def normalised(images):
    return ((images - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).permute(0, 1, 4, 2, 3)


def test_saved_and_loaded_da3_equals_the_nets_own_forward(saved):
    net, d = saved
    adapter = load_adapter("da3", d)
    assert isinstance(adapter, DA3Adapter) and adapter.divisor == 14
    images = torch.rand(1, 3, 28, 42, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        up = net(normalised(images), infer_gs=True).gaussians
        g = adapter(images)
    assert g.batch_shape == (1,) and g.num == 3 * 28 * 42 and g.sh_degree == 2
    assert_matches_upstream(g[0], first(up))
    assert adapter.num_parameters(True) == sum(p.numel() for p in net.gs_head.parameters())


def test_decode_matches_the_packages_gs_adapter_on_random_tensors(saved):
    net, _ = saved
    adapter = DA3Adapter(small_da3())
    gen = torch.Generator().manual_seed(2)
    B, V, H, W = 1, 2, 5, 7
    C = 2 + 3 + 4 + 27 + 1
    raw = 2 * torch.randn(B, V, H, W, C, generator=gen)
    logit = torch.randn(B, V, H, W, generator=gen)
    depth = 1 + torch.rand(B, V, H, W, generator=gen)
    q, _ = torch.linalg.qr(torch.randn(B, V, 3, 3, generator=gen))
    q = q * torch.det(q)[..., None, None]  # proper rotations
    c2w = torch.eye(4).repeat(B, V, 1, 1)
    c2w[..., :3, :3], c2w[..., :3, 3] = q, torch.randn(B, V, 3, generator=gen)
    K = torch.tensor([[9.0, 0.0, 3.5], [0.0, 8.0, 2.5], [0.0, 0.0, 1.0]]).repeat(B, V, 1, 1)
    up = net.gs_adapter(extrinsics=torch.linalg.inv(c2w), intrinsics=K, depths=depth, opacities=logit.sigmoid(),
                        raw_gaussians=raw, image_shape=(H, W))
    f = DA3Features([], torch.zeros(B, V, 3, H, W), depth, c2w, K, None)
    g = adapter.decode(torch.cat([raw, logit[..., None]], -1), f)
    assert_matches_upstream(g[0], first(up))
    with pytest.raises(ValueError, match="da3 head channels"):
        adapter.decode(raw, f)


def test_strict_loading_refuses_mismatched_files(saved, tmp_path):
    net, d = saved
    state = load_file(str(d / "model.safetensors"))
    assert len(state) < len(net.state_dict())  # the DualDPT head ties weights: the file holds them once
    state.pop(next(k for k in state if k.startswith("model.gs_head.")))
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((d / "config.json").read_text())
    with pytest.raises(ValueError, match="model.safetensors: weights do not match .* 1 missing"):
        load_adapter("da3", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_name": "da3-nope"}))
    with pytest.raises(ValueError, match="'da3-nope' is not a depth-anything-3 preset"):
        load_adapter("da3", tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_adapter("da3", tmp_path)


def test_two_metagrad_iterations_change_only_the_gs_head(saved):
    _, d = saved
    adapter = load_adapter("da3", d)
    split = split_views(scene_at_predicted_cameras(adapter, scale=2.0), num_context=2, num_target=2, rule="first")
    before = {n: p.detach().clone() for n, p in adapter.named_parameters()}
    logs = finetune_head(adapter, [split], pose_free_metagrad_config())
    assert len(logs) == 2 and all(math.isfinite(x["loss"]) and x["grad_norm"] > 0 for x in logs)
    assert_only_head_changed(adapter, before)


def test_a_nested_preset_uses_its_any_view_branch(saved, tmp_path):
    net, _ = saved
    nested = {"__object__": {"path": "depth_anything_3.model.da3", "name": "NestedDepthAnything3Net",
                             "args": "as_params"}, "anyview": SMALL_DA3, "metric": SMALL_DA3}
    torch.manual_seed(0)
    whole = build_net({"config": nested}, "nested")
    whole.da3.load_state_dict(net.state_dict())
    save_model(torch.nn.ModuleDict({"model": whole}), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"config": nested}))
    adapter = load_adapter("da3", tmp_path)
    images = torch.rand(1, 2, 28, 28, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        up = net(normalised(images), infer_gs=True).gaussians
        g = adapter(images)
    assert_matches_upstream(g[0], first(up))
