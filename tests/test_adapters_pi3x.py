"""The pi3x adapter (upstream Pi3X frozen, a new Gaussian head): a tiny Pi3X saved and loaded back through
the local-path loader, strict loading, the decode against independent conversions, the frozen part equal
to upstream's forward, head-only MetaGrad and the CLI."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys

import pytest
import torch

pytest.importorskip("pi3")  # installed from a clone (no PyPI package): absent in CI, where these tests skip
if importlib.util.find_spec("ffgs") is None:  # the head's class (importorskip would run ffgs's torchvision import)
    pytest.skip("optional package ffgs (foresplat[anysplat]) is not installed", allow_module_level=True)

from safetensors.torch import save_file  # noqa: E402

from adapter_helpers import covariance, pose_free_metagrad_config, quat_to_matrix  # noqa: E402
from foresplat.cameras import Cameras  # noqa: E402
from foresplat.data.scene import Scene, split_views  # noqa: E402
from foresplat.models.adapter import MissingExtraError, load_adapter  # noqa: E402
from foresplat.models.adapters.finetune import finetune_head  # noqa: E402
from foresplat.models.adapters.pi3x import Pi3XAdapter, intrinsics_from_local_points  # noqa: E402
from foresplat.models.adapters.tiny import TINY_PI3X, tiny_adapter, tiny_pi3x  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")


def _state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}


def _images(views: int = 2, size: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, views, size, size, 3, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def pi3x_weights(tmp_path_factory):
    """A tiny Pi3X's model.safetensors + config.json (TINY_PI3X), and the network it came from."""
    src = tiny_pi3x(7)
    d = tmp_path_factory.mktemp("pi3x")
    save_file(_state(src), str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(TINY_PI3X))
    return d, src


def test_saved_tiny_pi3x_loads_back_with_identical_outputs_and_the_frozen_part_is_upstreams_forward(pi3x_weights):
    d, src = pi3x_weights
    a, b = load_adapter("pi3x", d), load_adapter("pi3x", d)
    mine, theirs = a.net.state_dict(), src.state_dict()
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in theirs)
    head_a, head_b = a.head.state_dict(), b.head.state_dict()
    assert all(torch.equal(head_a[k], head_b[k]) for k in head_a)  # the same new head every load
    assert a.num_parameters(trainable_only=True) == sum(p.numel() for p in a.head.parameters())
    images = _images()
    ref = Pi3XAdapter(copy.deepcopy(src), copy.deepcopy(a.head), TINY_PI3X["sh_degree"], TINY_PI3X["gs_layers"])
    with torch.no_grad():
        ga, gr = a(images), ref(images)
    assert ga.num == 2 * 28 * 28
    assert all(torch.equal(x, y) for x, y in zip(ga.tensors(), gr.tensors()))
    # encode is upstream's forward with every prior branch masked off (the adapter does not run them)
    upstream = copy.deepcopy(src)
    off = torch.zeros(1, 2, dtype=torch.bool)
    with torch.no_grad():
        out = upstream(images.permute(0, 1, 4, 2, 3), mask_add_depth=off, mask_add_ray=off, mask_add_pose=off)
        f = a.encode(images)
    assert torch.equal(f.points, out["points"]) and torch.equal(f.pred_c2w, out["camera_poses"])
    assert [t.shape for t in f.tokens] == [(1, 2, 5 + 4, 64)] * 4  # 2 x width, registers + 2 x 2 patches


def test_pi3x_loading_is_strict_with_one_line_errors(pi3x_weights, tmp_path):
    d, src = pi3x_weights
    state = _state(src)
    (tmp_path / "config.json").write_text((d / "config.json").read_text())
    save_file({k: v for k, v in state.items() if not k.startswith("camera_head.")}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"weights do not match Pi3X of .* missing \(e.g. \['camera_head") as e:
        load_adapter("pi3x", tmp_path)
    assert "\n" not in str(e.value)
    save_file({**state, "extra_head.w": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="1 unexpected"):
        load_adapter("pi3x", tmp_path)
    wider = {**TINY_PI3X, "pi3x": {**TINY_PI3X["pi3x"], "camera_dim": 24}}  # a Pi3X of another size
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(wider))
    with pytest.raises(ValueError, match="of another shape"):
        load_adapter("pi3x", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**TINY_PI3X, "pi3x": {"depth": 3}}))
    with pytest.raises(ValueError, match=r"not a pi3x config: .*unknown keys \['depth'\]"):
        load_adapter("pi3x", tmp_path)


def _rotation(axis: list[float], angle: float) -> torch.Tensor:
    k = torch.nn.functional.normalize(torch.tensor(axis, dtype=torch.float64), dim=0)
    Kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * Kx + (1 - math.cos(angle)) * Kx @ Kx


def test_decode_matches_reference_conversions_after_the_similarity_alignment(pi3x_weights):
    d, _ = pi3x_weights
    a = load_adapter("pi3x", d)
    images = _images(3, seed=1)
    with torch.no_grad():
        f = a.encode(images)
        raw = a.run_head(f)[0].permute(0, 2, 3, 1)  # [V, H, W, C]
        pose_free = a(images)
    assert a.last_alignment is None
    # the given cameras: Pi3X's, moved by a known similarity x -> s R x + t
    s, R, t = 2.5, _rotation([1.0, -2.0, 0.5], 0.7), torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    given = f.pred_c2w[0].double().clone()
    given[:, :3, :3] = R @ given[:, :3, :3]
    given[:, :3, 3] = s * given[:, :3, 3] @ R.T + t
    Ks = torch.eye(3).expand(1, 3, 3, 3)
    near, far = torch.tensor([0.1]), torch.tensor([100.0])
    with torch.no_grad():
        g = a(images, torch.linalg.inv(given)[None].float(), Ks, near, far)
    fit = a.last_alignment[0]
    assert abs(float(fit.scale) - s) < 1e-4 and float(fit.rotation_error_deg.max()) < 0.5  # acos of float32 input
    assert float(fit.centre_error.max()) < 1e-4
    # independent reference: channels [density | scale | rotation x y z w | SH colour-major]
    assert raw.shape[-1] == 8 + 3 * 16  # SH degree 3
    density, sc, rot, sh = raw.reshape(-1, raw.shape[-1]).double().split([1, 3, 4, 48], dim=-1)
    pts = f.points[0].reshape(-1, 3).double()
    torch.testing.assert_close(pose_free.means[0].double(), pts)
    torch.testing.assert_close(g.means[0].double(), s * pts @ R.T + t, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(g.opacity_logits[0].double(), density[:, 0], atol=1e-5, rtol=0)
    scale_ref = s * (0.001 * torch.nn.functional.softplus(sc)).clamp(max=0.3)
    torch.testing.assert_close(g.log_scales[0].double().exp(), scale_ref, atol=1e-6, rtol=1e-4)
    cov_ref = R @ covariance(quat_to_matrix(rot, scalar_first=False), scale_ref) @ R.T
    cov = covariance(quat_to_matrix(g.quats[0].double()), g.log_scales[0].double().exp())
    torch.testing.assert_close(cov, cov_ref, atol=1e-9, rtol=1e-4)
    coeffs = sh.unflatten(-1, (3, 16)).transpose(-1, -2)  # [N, 16, 3]
    torch.testing.assert_close(g.sh[0, :, 0].double(), coeffs[:, 0], atol=1e-5, rtol=1e-5)  # DC: rotation-invariant
    torch.testing.assert_close(pose_free.sh[0, :, 1:4].double(), 0.025 * coeffs[:, 1:4], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(pose_free.sh[0, :, 9:16].double(), 0.1 * 0.25 ** 3 * coeffs[:, 9:16],
                               atol=1e-7, rtol=1e-5)


def test_intrinsics_are_the_fit_of_the_local_points_to_the_pixel_centres():
    H, W, K = 6, 8, torch.tensor([[30.0, 0.0, 4.2], [0.0, 25.0, 2.9], [0.0, 0.0, 1.0]])
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    z = 1 + torch.rand(H, W, generator=torch.Generator().manual_seed(0))
    local = torch.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)
    torch.testing.assert_close(intrinsics_from_local_points(local[None]), K[None], atol=1e-4, rtol=1e-5)


def _scene_at_predicted_cameras(adapter, size: int = 28) -> Scene:
    """4 views whose cameras are the ones the tiny model predicts for the first two (repeated), with a
    plain pinhole K (the random model's fitted intrinsics need not be a valid camera)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = torch.stack([xx, yy, 0.5 * (xx + yy)], -1).expand(4, size, size, 3).clone()
    images = images * (0.5 + 0.5 * torch.rand(4, 1, 1, 1, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        c2w = adapter.encode(images[None, :2]).pred_c2w[0].repeat(2, 1, 1)
    K = torch.tensor([[size, 0.0, size / 2], [0.0, size, size / 2], [0.0, 0.0, 1.0]]).expand(4, 3, 3)
    return Scene(images, Cameras(torch.linalg.inv(c2w), K.clone(), size, size), "ramp", near=0.01, far=100.0)


def test_two_metagrad_iterations_change_only_the_head_and_the_head_round_trips(pi3x_weights, tmp_path):
    d, _ = pi3x_weights
    adapter = load_adapter("pi3x", d)
    split = split_views(_scene_at_predicted_cameras(adapter), num_context=2, num_target=2, rule="first")
    before = {n: p.detach().clone() for n, p in adapter.named_parameters()}
    digest = adapter.backbone_digest()
    logs = finetune_head(adapter, [split], pose_free_metagrad_config())
    assert len(logs) == 2 and all(math.isfinite(x["loss"]) and x["grad_norm"] > 0 for x in logs)
    assert adapter.backbone_digest() == digest
    head_ids = {id(p) for p in adapter.head_parameters()}
    for name, p in adapter.named_parameters():
        if id(p) not in head_ids:
            assert torch.equal(p, before[name]), f"backbone parameter {name} changed"
    assert any(not torch.equal(p, before[n]) for n, p in adapter.named_parameters() if id(p) in head_ids)
    adapter.save_head(tmp_path / "head", {"weights": str(d)})
    again = load_adapter("pi3x", d, head=tmp_path / "head")
    mine, theirs = again.head.state_dict(), adapter.head.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    with pytest.raises(ValueError, match="a head of model 'pi3x', not of 'edge'"):
        tiny_adapter("edge").load_head(tmp_path / "head")


def test_cli_predict_with_a_tiny_pi3x_and_its_fine_tuned_head(pi3x_weights, tmp_path, capsys):
    from foresplat.cli import main
    from foresplat.io import read_ply

    d, _ = pi3x_weights
    scene = ["synthetic:3", "--num-context", "3", "--num-target", "1", "--width", "28", "--height", "28"]
    rc = main(["predict", *scene, "--model", "pi3x", "--weights", str(d), "--out", str(tmp_path / "a.ply")])
    err = capsys.readouterr().err
    assert rc == 0, err
    g = read_ply(tmp_path / "a.ply")
    assert g.num == 3 * 28 * 28 and torch.isfinite(g.means).all()
    assert "camera_alignment" in json.loads((tmp_path / "a.json").read_text())
    tuned = load_adapter("pi3x", d)
    with torch.no_grad():
        tuned.head.scratch.output_conv2[-1].bias[0] += 1.0  # the density channel of a "fine-tuned" head
    tuned.save_head(tmp_path / "head", {"weights": str(d)})
    assert main(["predict", *scene, "--model", "pi3x", "--weights", str(d), "--head", str(tmp_path / "head"),
                 "--out", str(tmp_path / "b.ply")]) == 0
    h = read_ply(tmp_path / "b.ply")
    assert torch.allclose(h.means, g.means, atol=1e-5)  # means are Pi3X's points: the head does not move them
    torch.testing.assert_close(h.opacity_logits, g.opacity_logits + 1.0, atol=1e-4, rtol=1e-4)


def test_a_missing_pi3_is_a_one_line_cli_error_naming_the_clone(monkeypatch, tmp_path, capsys):
    from foresplat.cli import main

    monkeypatch.setitem(sys.modules, "pi3", None)  # as if not installed
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert main(["predict", "synthetic:1", "--model", "pi3x", "--weights", str(tmp_path),
                 "--out", str(tmp_path / "g.ply")]) == 2
    err = capsys.readouterr().err
    assert "needs the package pi3==0.1" in err and "pip install --no-deps" in err and "yyfz/Pi3" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(MissingExtraError):
        load_adapter("pi3x", tmp_path)
