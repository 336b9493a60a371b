"""AnySplat through ffgs (optional extra foresplat[anysplat]): a tiny AnySplat of ffgs's real classes with
random weights, saved and loaded back, against ffgs's own forward; channel decoding against upstream's
converters; camera alignment; strict loading; head-only MetaGrad."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

if importlib.util.find_spec("ffgs") is None:
    pytest.skip("optional package ffgs (foresplat[anysplat]) is not installed", allow_module_level=True)

from adapter_helpers import (assert_only_head_changed, covariance, pose_free_metagrad_config,  # noqa: E402
                             quat_to_matrix, scene_at_predicted_cameras)
from foresplat.data.scene import split_views  # noqa: E402
from foresplat.gaussians import Gaussians  # noqa: E402
from foresplat.models.adapter import load_adapter  # noqa: E402
from foresplat.models.adapters.anysplat import AnySplatAdapter, gaussians_from_channels  # noqa: E402
from foresplat.models.adapters.finetune import finetune_head  # noqa: E402
from foresplat.models.adapters.similarity import Similarity, transform_gaussians  # noqa: E402
from foresplat.models.adapters.tiny import tiny_anysplat  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # ffgs's forward on a CPU

def assert_matches_upstream(g: Gaussians, up, atol=1e-5):
    """foresplat raw Gaussians [N] vs upstream's (activated) Gaussians of one scene."""
    assert g.num == up.means.shape[0]
    assert torch.allclose(g.means, up.means, atol=atol)
    assert torch.allclose(g.scales(), up.scales, rtol=1e-5, atol=1e-9)
    assert torch.allclose(g.opacities(), up.opacities, atol=1e-6)
    q_up = torch.nn.functional.normalize(up.rotations[..., [3, 0, 1, 2]], dim=-1)
    dots = (g.unit_quats() * q_up).sum(-1).abs()
    assert torch.allclose(dots, torch.ones_like(dots), atol=1e-5)  # equal up to sign
    assert torch.allclose(g.sh, up.harmonics.transpose(-1, -2)[..., :16, :], atol=1e-6)
    assert torch.allclose(covariance(quat_to_matrix(g.quats), g.scales()),
                          covariance(quat_to_matrix(up.rotations, scalar_first=False), up.scales), atol=1e-9)


def views(V=3, size=56, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, V, size, size, 3, generator=g)


def test_saved_and_loaded_tiny_anysplat_equals_ffgs_forward(tmp_path):
    model = tiny_anysplat()
    model.save_pretrained(tmp_path)
    adapter = load_adapter("anysplat", tmp_path)
    assert isinstance(adapter, AnySplatAdapter) and adapter.divisor == 14
    images = views()
    with torch.no_grad():
        up = model(images.permute(0, 1, 4, 2, 3)).gaussians
        g = adapter(images)
    assert g.batch_shape == (1,) and g.sh_degree == 3 and 10 < g.num < 3 * 56 * 56
    assert_matches_upstream(g[0], type(up)(*(t[0] for t in (
        up.means, up.harmonics, up.opacities, up.scales, up.rotations))))
    assert adapter.num_parameters(True) == sum(p.numel() for p in model.encoder.gaussian_param_head.parameters())


def test_without_voxelisation_one_gaussian_per_pixel(tmp_path):
    model = tiny_anysplat(voxelize=False)
    adapter = AnySplatAdapter(model)
    images = views(2, 28)
    with torch.no_grad():
        up = model(images.permute(0, 1, 4, 2, 3)).gaussians
        g = adapter(images)[0]
    assert g.num == 2 * 28 * 28
    assert_matches_upstream(g, type(up)(*(t[0] for t in (up.means, up.harmonics, up.opacities, up.scales,
                                                          up.rotations))))


@pytest.mark.parametrize("initial", [0.0, 1.5])
def test_channel_decoding_matches_upstream_converters_on_random_tensors(initial):
    model = tiny_anysplat()
    enc = model.encoder
    gen = torch.Generator().manual_seed(3)
    n, d_in = 500, enc.gaussian_adapter.d_in
    raw = 4 * torch.randn(n, 1 + d_in, generator=gen)  # scale channels reach both softplus tails and the cap
    raw[:10, 1:4] = -60.0
    means = torch.randn(n, 3, generator=gen)
    exponent = 2.0 ** initial
    op_up = 0.5 * (1 - (1 - raw[:, 0].sigmoid()) ** exponent + raw[:, 0].sigmoid() ** (1 / exponent))
    up = enc.gaussian_adapter(means[None], means[None, :, 2:], op_up[None], raw[None, :, 1:])
    g = gaussians_from_channels(raw, means, 4, enc.gaussian_adapter.sh_mask, exponent)
    assert bool(torch.isfinite(g.log_scales).all())
    assert_matches_upstream(g, type(up)(*(t[0] for t in (up.means, up.harmonics, up.opacities, up.scales,
                                                          up.rotations))))
    with pytest.raises(ValueError, match="head channels"):
        gaussians_from_channels(raw[:, :-1], means, 4, enc.gaussian_adapter.sh_mask)


def test_given_cameras_align_the_prediction_and_record_residuals():
    adapter = AnySplatAdapter(tiny_anysplat())
    images = views(3)
    with torch.no_grad():
        f = adapter.encode(images)
        g_model = adapter.decode(adapter.run_head(f), f)[0]
    # the "given" cameras: the predicted ones moved by a known similarity
    ang = torch.tensor(0.7, dtype=torch.float64)
    R = torch.tensor([[math.cos(ang), -math.sin(ang), 0], [math.sin(ang), math.cos(ang), 0], [0, 0, 1]],
                     dtype=torch.float64)
    s, t = torch.tensor(3.0, dtype=torch.float64), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    c2w = f.pred_c2w[0].double()
    given = c2w.clone()
    given[:, :3, :3] = R @ c2w[:, :3, :3]
    given[:, :3, 3] = s * c2w[:, :3, 3] @ R.T + t
    viewmats = torch.linalg.inv(given).float()[None]
    Ks = f.pred_Ks.float()
    g = adapter(images, viewmats, Ks)[0]
    sim = adapter.last_alignment[0]
    assert abs(float(sim.scale) - 3.0) < 1e-3 and float(sim.rotation_error_deg.max()) < 0.05
    expect = transform_gaussians(g_model, Similarity(s, R, t, *(torch.zeros(1),) * 3))
    assert torch.allclose(g.means, expect.means, atol=1e-3 * float(expect.means.abs().max()))
    assert torch.allclose(g.sh, expect.sh, atol=1e-4)
    assert adapter(images) is not None and adapter.last_alignment is None


def test_strict_loading_refuses_mismatched_files(tmp_path):
    from safetensors.torch import save_file

    model = tiny_anysplat()
    model.save_pretrained(tmp_path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    key = "encoder.gaussian_param_head.scratch.output_conv2.2.bias"
    partial = {k: v for k, v in state.items() if k != key}
    save_file(partial, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model.safetensors: weights do not match AnySplat.*1 missing"):
        load_adapter("anysplat", tmp_path)
    save_file({**state, "encoder.extra": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="1 unexpected"):
        load_adapter("anysplat", tmp_path)
    save_file(state, str(tmp_path / "model.safetensors"))
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "embed_dim": 48}))
    with pytest.raises(ValueError, match="of another shape"):
        load_adapter("anysplat", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "no_such_argument": 1}))
    with pytest.raises(ValueError, match="config.json: not arguments of ffgs's AnySplat"):
        load_adapter("anysplat", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="config.json: not a readable safetensors file"):
        load_adapter("anysplat", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_adapter("anysplat", tmp_path / "empty_dir" if (tmp_path / "empty_dir").mkdir() is None else None)


def test_two_metagrad_iterations_change_only_the_gaussian_head():
    adapter = AnySplatAdapter(tiny_anysplat(voxelize=False))
    split = split_views(scene_at_predicted_cameras(adapter, scale=2.0, far=20.0), num_context=2, num_target=2,
                        rule="first")
    before = {n: p.detach().clone() for n, p in adapter.named_parameters()}
    logs = finetune_head(adapter, [split], pose_free_metagrad_config())
    assert len(logs) == 2 and all(math.isfinite(x["loss"]) and x["grad_norm"] > 0 for x in logs)
    assert_only_head_changed(adapter, before)
