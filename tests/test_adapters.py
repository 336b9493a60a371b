"""The adapter interface: edge models behind it, registry and loading, camera fit, similarity transform
of Gaussians (SH of every degree), head-only MetaGrad fine-tuning."""

from __future__ import annotations

import math

import pytest
import torch

from adapter_helpers import assert_only_head_changed, metagrad_config
from foresplat.cameras import Cameras, look_at
from foresplat.data.scene import Scene, split_views
from foresplat.gaussians import Gaussians
from foresplat.models import Predictor, PredictorConfig
from foresplat.models.adapter import (AdapterSpec, MissingExtraError, load_adapter, register_adapter,
                                      registered_adapters, require)
from foresplat.models.adapters.edge import EdgeAdapter
from foresplat.models.adapters.finetune import finetune_head
from foresplat.models.adapters.similarity import (Similarity, align_batch, fit_batch, fit_cameras, sh_rotation,
                                                  transform_gaussians)
from foresplat.render import render
from foresplat.render.sh import spherical_harmonics

F64 = torch.float64


def make_views(B=1, V=3, H=32, W=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(B, V, H, W, 3, generator=g)
    ang = torch.rand(B, V, generator=g) * 1.5
    eye = torch.stack([3 * torch.cos(ang), 3 * torch.sin(ang), 0.5 + torch.rand(B, V, generator=g)], -1)
    viewmats = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    Ks = torch.tensor([[1.2 * W, 0, W / 2], [0, 1.2 * H, H / 2], [0, 0, 1.0]]).expand(B, V, 3, 3).clone()
    return images, viewmats, Ks, torch.full((B,), 1.0), torch.full((B,), 8.0)


def random_rotation(g: torch.Generator, dtype=F64) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def random_gaussians(n, seed, k=16, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return Gaussians(torch.randn(n, 3, generator=g, dtype=dtype) * 0.4, torch.randn(n, 4, generator=g, dtype=dtype),
                     -2.0 + 0.2 * torch.randn(n, 3, generator=g, dtype=dtype),
                     torch.randn(n, generator=g, dtype=dtype), 0.3 * torch.randn(n, k, 3, generator=g, dtype=dtype))


# ---- edge models behind the interface -------------------------------------------------------------

def test_edge_adapter_equals_the_predictor_and_freezes_its_backbone():
    torch.manual_seed(0)
    p = Predictor(PredictorConfig.preset("edge-t"))
    a = EdgeAdapter(p)
    views = make_views(2, 3)
    with torch.no_grad():
        ref = p(*views)
    g = a(*views)
    for (name, x), y in zip(g.items(), ref.tensors()):
        assert torch.equal(x, y), name
    assert a.num_parameters(True) == sum(q.numel() for q in p.head.parameters())
    assert all(not q.requires_grad for q in p.backbone.parameters())
    g.means.sum().backward()  # gradients reach the head only
    assert all(q.grad is not None for q in p.head.parameters())
    assert all(q.grad is None for q in p.backbone.parameters())


def test_load_adapter_edge_round_trip_and_errors(tmp_path):
    torch.manual_seed(1)
    p = Predictor(PredictorConfig.preset("edge-t"))
    p.save(tmp_path / "model")
    a = load_adapter("edge", tmp_path / "model")
    views = make_views(1, 2, seed=3)
    with torch.no_grad():
        assert torch.equal(a(*views).means, p(*views).means)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        load_adapter("nope", tmp_path / "model")
    with pytest.raises(FileNotFoundError, match="--weights: .*missing"):
        load_adapter("edge", tmp_path / "missing")
    with pytest.raises(ValueError, match="near/far"):
        a(views[0], views[1], views[2], None, None)
    with pytest.raises(ValueError, match="viewmats/Ks: this model needs the cameras"):
        a(views[0])
    with pytest.raises(ValueError, match="multiples of"):
        a(torch.rand(1, 2, 30, 32, 3), *views[1:])
    assert {"edge", "anysplat", "da3", "vggt"} <= set(registered_adapters())
    from foresplat.models import pretrained

    if pretrained.DEFAULT_STEM.with_suffix(".json").is_file():  # the shipped predictor, by name
        assert isinstance(load_adapter("edge", "default"), EdgeAdapter)


def test_missing_optional_package_names_package_and_extra():
    with pytest.raises(MissingExtraError, match=r"needs the package somepkg==1.*foresplat\[some\]"):
        require("foresplat_no_such_module_xyz", "somepkg==1", "some")
    register_adapter(AdapterSpec("needs-missing", "foresplat_no_such_module_xyz:load", "x", "anything"))
    try:
        with pytest.raises(ModuleNotFoundError):
            load_adapter("needs-missing", __file__)
    finally:
        from foresplat.models import adapter as mod
        mod._ADAPTERS.pop("needs-missing")


# ---- camera fit and similarity transform ------------------------------------------------------------

def _c2w(R, c):
    m = torch.eye(4, dtype=R.dtype).repeat(R.shape[0], 1, 1)
    m[:, :3, :3], m[:, :3, 3] = R, c
    return m


def test_fit_cameras_recovers_a_known_similarity_and_reports_residuals():
    g = torch.Generator().manual_seed(0)
    V = 5
    Rp = torch.stack([random_rotation(g) for _ in range(V)])
    cp = torch.randn(V, 3, generator=g, dtype=F64)
    R, s, t = random_rotation(g), torch.tensor(2.5, dtype=F64), torch.randn(3, generator=g, dtype=F64)
    given = _c2w(R @ Rp, s * cp @ R.T + t)
    sim = fit_cameras(_c2w(Rp, cp), given)
    assert torch.allclose(sim.R, R, atol=1e-10) and abs(float(sim.scale) - 2.5) < 1e-10
    assert torch.allclose(sim.t, t, atol=1e-10)
    assert float(sim.rotation_error_deg.max()) < 1e-5 and float(sim.centre_error.max()) < 1e-9
    # a perturbed camera shows up in its own residuals
    given[2, :3, 3] += torch.tensor([0.3, 0.0, 0.0], dtype=F64)
    sim = fit_cameras(_c2w(Rp, cp), given)
    assert int(sim.centre_error.argmax()) == 2 and float(sim.centre_error[2]) > 0.1
    with pytest.raises(ValueError, match=">= 2 views"):
        fit_cameras(_c2w(Rp[:1], cp[:1]), given[:1])
    with pytest.raises(ValueError, match="coincide"):
        fit_cameras(_c2w(Rp, torch.zeros(V, 3, dtype=F64)), given)


def test_batch_fit_and_alignment_move_each_scene_by_its_own_similarity():
    g = torch.Generator().manual_seed(3)
    B, V, N = 2, 4, 6
    truth = [(random_rotation(g), 0.5 + b, torch.randn(3, generator=g, dtype=F64)) for b in range(B)]  # R, s, t
    pred, given = [], []
    for R, sc, t in truth:
        Rp, cp = torch.stack([random_rotation(g) for _ in range(V)]), torch.randn(V, 3, generator=g, dtype=F64)
        pred.append(_c2w(Rp, cp))
        given.append(_c2w(R @ Rp, sc * cp @ R.T + t))
    fitted = fit_batch(torch.stack(pred), torch.linalg.inv(torch.stack(given)))  # viewmats: world-to-camera
    assert fit_batch(torch.stack(pred), None) is None and len(fitted) == B
    for f, (R, sc, t) in zip(fitted, truth):
        assert torch.allclose(f.R, R, atol=1e-9) and abs(float(f.scale) - sc) < 1e-9 and torch.allclose(f.t, t, atol=1e-9)
    quats = torch.nn.functional.normalize(torch.randn(B, N, 4, generator=g), dim=-1)
    gs = Gaussians(torch.randn(B, N, 3, generator=g), quats, torch.randn(B, N, 3, generator=g),
                   torch.randn(B, N, generator=g), torch.randn(B, N, 4, 3, generator=g))
    moved = align_batch(gs, fitted)
    assert align_batch(gs, None) is gs and moved.batch_shape == (B,)
    for b in range(B):  # scene b is moved by its own fit
        for a, r in zip(moved[b].tensors(), transform_gaussians(gs[b], fitted[b]).tensors()):
            torch.testing.assert_close(a, r)
    assert not torch.allclose(moved.means[0], transform_gaussians(gs[0], fitted[1]).means)


@pytest.mark.parametrize("k", [1, 4, 9, 16])
def test_sh_rotation_matches_evaluation_at_rotated_directions(k):
    g = torch.Generator().manual_seed(k)
    R = random_rotation(g)
    coeffs = torch.randn(7, k, 3, generator=g, dtype=F64)
    dirs = torch.nn.functional.normalize(torch.randn(7, 3, generator=g, dtype=F64), dim=-1)
    rotated = sh_rotation(R, k) @ coeffs
    deg = {1: 0, 4: 1, 9: 2, 16: 3}[k]
    assert torch.allclose(spherical_harmonics(deg, dirs @ R.T, rotated), spherical_harmonics(deg, dirs, coeffs),
                          atol=1e-10)


def test_transformed_gaussians_render_the_same_from_transformed_cameras():
    g = torch.Generator().manual_seed(5)
    R, s, t = random_rotation(g), torch.tensor(1.7, dtype=F64), torch.randn(3, generator=g, dtype=F64)
    z = torch.zeros(1, dtype=F64)
    sim = Similarity(s, R, t, z, z, z)
    gs = random_gaussians(30, 2, k=16)
    size = 24
    vm = look_at(torch.tensor([[3.0, 0.5, 1.0], [0.4, 3.0, -0.5]], dtype=F64), torch.zeros(3, dtype=F64),
                 torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    K = torch.tensor([[30.0, 0, 12], [0, 30.0, 12], [0, 0, 1]], dtype=F64).expand(2, 3, 3).clone()
    c2w = torch.linalg.inv(vm)
    c2w_new = _c2w(R @ c2w[:, :3, :3], s * c2w[:, :3, 3] @ R.T + t)
    a = render(gs, Cameras(vm, K, size, size), backend="reference").colors
    b = render(transform_gaussians(gs, sim), Cameras(torch.linalg.inv(c2w_new), K, size, size),
               backend="reference").colors
    assert float(a.std()) > 0.01
    assert torch.allclose(a, b, atol=1e-8)
    # each Gaussian's world rotation is R times its old one
    def rot(q):
        w, x, y, z = torch.nn.functional.normalize(q, dim=-1).unbind(-1)
        return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)
    assert torch.allclose(rot(transform_gaussians(gs, sim).quats), R @ rot(gs.quats), atol=1e-10)


# ---- head-only MetaGrad fine-tuning ------------------------------------------------------------------

def _scene(views=5, size=16):
    images, vm, Ks, _, _ = make_views(1, views, size, size, seed=7)
    ang = torch.arange(views) * (2 * math.pi / views)
    eye = torch.stack([3 * torch.cos(ang), 3 * torch.sin(ang), torch.ones_like(ang)], -1)
    vm = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    with torch.no_grad():
        imgs = render(random_gaussians(20, 3, k=4, dtype=torch.float32),
                      Cameras(vm, Ks[0], size, size), backend="reference").colors.clamp(0, 1)
    return Scene(imgs, Cameras(vm, Ks[0], size, size), "toy", near=1.0, far=8.0)


def test_two_metagrad_iterations_change_only_head_parameters():
    torch.manual_seed(0)
    a = EdgeAdapter(Predictor(PredictorConfig.preset("edge-t")))
    split = split_views(_scene(), num_context=3, num_target=2, seed=0)
    before = {n: p.detach().clone() for n, p in a.named_parameters()}
    logs = finetune_head(a, [split], metagrad_config())
    assert len(logs) == 2 and all(math.isfinite(x["loss"]) and x["grad_norm"] > 0 for x in logs)
    assert_only_head_changed(a, before)


@pytest.mark.parametrize("name, package", [("anysplat", "ffgs==0.1.0.dev1"), ("vggt", "ffgs==0.1.0.dev1"),
                                           ("da3", "depth-anything-3==0.1.1")])
def test_a_missing_model_package_is_a_one_line_cli_error(name, package, monkeypatch, tmp_path, capsys):
    import sys

    from foresplat.cli import main

    monkeypatch.setitem(sys.modules, {"da3": "depth_anything_3"}.get(name, "ffgs"), None)  # as if not installed
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert main(["predict", "synthetic:1", "--model", name, "--weights", str(tmp_path),
                 "--out", str(tmp_path / "g.ply")]) == 2
    err = capsys.readouterr().err
    assert f"needs the package {package}" in err and f"foresplat[{'da3' if name == 'da3' else 'anysplat'}]" in err
    assert len(err.strip().splitlines()) == 1


def test_a_stream_skips_scenes_that_fail_to_encode_but_not_all_of_them():
    torch.manual_seed(0)
    a = EdgeAdapter(Predictor(PredictorConfig.preset("edge-t")))
    good = split_views(_scene(), num_context=3, num_target=2, seed=0)
    bad_ctx = good.context.center_cropped(good.context.width - 2, good.context.height - 2)  # off the divisor
    bad = type(good)(bad_ctx, good.target, good.context_indices, good.target_indices)
    logs = finetune_head(a, lambda it: bad if it == 0 else good, metagrad_config(iterations=2))
    assert "skipped" in logs[0] and "multiples of" in logs[0]["skipped"] and math.isfinite(logs[1]["loss"])
    with pytest.raises(ValueError, match="the first 10 scenes all failed to encode"):
        finetune_head(a, lambda it: bad, metagrad_config(iterations=12))
