"""Predictor tests: a contract class run against every registered backbone size, geometry of the
cost volume and the head, configs and checkpoints (tiny inputs: 32x32, 2-3 views)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Literal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from foresplat.cameras import Cameras, look_at
from foresplat.data.scene import Scene
from foresplat.gaussians import rgb_to_sh_dc
from foresplat.models import (PREDICTOR_PRESETS, Backbone, BackboneConfig, BackboneOutput, EdgeConfig,
                              HeadConfig, Predictor, PredictorConfig, build_backbone, register_backbone)
from foresplat.models import backbone as backbone_module
from foresplat.models.cost_volume import inverse_depth_candidates, plane_sweep_correlation
from foresplat.models.geometry import matrix_to_quat, quat_multiply, scale_intrinsics
from foresplat.models.head import _rotate_sh1

SIZES = sorted(PREDICTOR_PRESETS)


def make_views(B: int = 2, V: int = 3, H: int = 32, W: int = 32, seed: int = 0):
    """Random images and cameras looking at the origin from ~3 units: (images, viewmats, Ks, near, far)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(B, V, H, W, 3, generator=g)
    ang = torch.rand(B, V, generator=g) * 1.5
    eye = torch.stack([3 * torch.cos(ang), 3 * torch.sin(ang), 0.5 + torch.rand(B, V, generator=g)], -1)
    viewmats = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))  # [B, V, 4, 4]
    f = 1.2 * W
    Ks = torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]]).expand(B, V, 3, 3).clone()
    return images, viewmats, Ks, torch.full((B,), 1.0), torch.full((B,), 8.0)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    w, x, y, z = F.normalize(q, dim=-1).unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, -1).reshape(*q.shape[:-1], 3, 3)


@pytest.mark.parametrize("size", SIZES)
class TestBackboneContract:
    """Every registered backbone size: shapes, gradients, determinism, checkpoint round trip."""

    def model(self, size: str) -> Predictor:
        torch.manual_seed(0)
        return Predictor(PredictorConfig.preset(size))

    def test_output_shapes(self, size):
        m = self.model(size)
        images, viewmats, Ks, near, far = make_views(2, 3)
        feats = m.backbone(images, viewmats, Ks, near, far)
        s = m.prediction_stride
        assert isinstance(feats, BackboneOutput)
        assert feats.depth.shape == (2, 3, 32 // s, 32 // s)
        assert feats.confidence.shape == (2, 3, 32 // s, 32 // s)
        assert feats.features.shape == (2, 3, m.backbone.out_channels, 32 // s, 32 // s)
        assert bool((feats.depth > 0).all())
        assert bool(((feats.confidence >= 0) & (feats.confidence <= 1)).all())
        g = m(images, viewmats, Ks, near, far)
        n = 3 * (32 // s) ** 2
        assert g.means.shape == (2, n, 3) and g.quats.shape == (2, n, 4)
        assert g.log_scales.shape == (2, n, 3) and g.opacity_logits.shape == (2, n)
        assert g.sh.shape == (2, n, m.config.head.num_sh, 3)
        g.validate()

    def test_gradients_reach_every_trainable_parameter(self, size):
        m = self.model(size)
        images, viewmats, Ks, near, far = make_views(1, 3)
        g = m(images, viewmats, Ks, near, far)
        gen = torch.Generator().manual_seed(1)
        loss = sum((t * torch.randn(t.shape, generator=gen)).sum() for t in g.tensors())
        loss.backward()
        missing = [n for n, p in m.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
        assert not missing, f"no gradient reaches {missing}"
        assert all(bool(torch.isfinite(p.grad).all()) for p in m.parameters())

    def test_eval_mode_is_deterministic(self, size):
        m = self.model(size).eval()
        inputs = make_views(2, 3)
        with torch.no_grad():
            a, b = m(*inputs), m(*inputs)
        for x, y in zip(a.tensors(), b.tensors()):
            assert torch.equal(x, y)

    def test_save_load_round_trip(self, size, tmp_path):
        m = self.model(size)
        with torch.no_grad():  # perturb so that the test does not pass on default init alone
            for p in m.parameters():
                p.add_(0.01 * torch.randn_like(p))
        m.save(tmp_path / "model", step=7)
        m2 = Predictor.from_checkpoint(tmp_path / "model")
        assert m2.config == m.config
        inputs = make_views(1, 3, seed=3)
        with torch.no_grad():
            for x, y in zip(m(*inputs).tensors(), m2(*inputs).tensors()):
                assert torch.equal(x, y)

    def test_frozen_backbone_gets_no_gradient(self, size):
        m = self.model(size).freeze_backbone()
        assert m.num_parameters(trainable_only=True) == sum(p.numel() for p in m.head.parameters())
        g = m(*make_views(1, 2))
        sum(t.sum() for t in g.tensors()).backward()
        assert all(p.grad is None for p in m.backbone.parameters())
        assert all(p.grad is not None for p in m.head.parameters())


def test_preset_sizes_are_as_documented():
    counts = {n: Predictor(PredictorConfig.preset(n)).num_parameters() for n in ("edge-s", "edge-m", "edge-l")}
    assert 0.7e6 < counts["edge-s"] < 1.3e6
    assert 2.5e6 < counts["edge-m"] < 3.5e6
    assert 6.5e6 < counts["edge-l"] < 9.5e6


# ---- geometry --------------------------------------------------------------------------------

def test_matrix_to_quat_round_trip_and_product():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(500, 4, generator=g, dtype=torch.float64), dim=-1)
    q = torch.cat([q, torch.eye(4, dtype=torch.float64), -torch.eye(4, dtype=torch.float64)])  # edge cases
    R = quat_to_matrix(q)
    q2 = matrix_to_quat(R)
    assert torch.allclose(quat_to_matrix(q2), R, atol=1e-10)
    assert bool((q2[:, 0] >= 0).all())
    a, b = q[:250], q[250:500]
    assert torch.allclose(quat_to_matrix(quat_multiply(a, b)), quat_to_matrix(a) @ quat_to_matrix(b), atol=1e-10)


def test_sh_degree1_rotation_matches_rotated_evaluation():
    """The band-1 colour C1 (-y s1 + z s2 - x s3) at camera-frame direction d equals the rotated
    coefficients' colour at world direction R d."""
    g = torch.Generator().manual_seed(0)
    C1 = 0.4886025119029199
    R = quat_to_matrix(torch.randn(4, generator=g, dtype=torch.float64))
    sh = torch.randn(3, 3, generator=g, dtype=torch.float64)  # [coeff, rgb]
    d = F.normalize(torch.randn(20, 3, generator=g, dtype=torch.float64), dim=-1)

    def band1(s, dirs):
        x, y, z = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]
        return C1 * (-y * s[0] + z * s[1] - x * s[2])

    assert torch.allclose(band1(sh, d), band1(_rotate_sh1(sh, R), d @ R.T), atol=1e-12)


def test_plane_sweep_finds_the_depth_of_synthetic_scenes():
    """Features that encode each pixel's true world point: at the ray-traced depth the warped source
    features match, so the correlation peak must lie within 10% of that depth for most pixels seen
    by every view; with wrongly posed cameras (rotations transposed) far fewer do."""
    from foresplat.data.synthetic import SyntheticConfig, generate_scene
    from foresplat.models.geometry import pixel_grid

    res, V = 32, 4
    good, bad = [], []
    for seed in (4, 5, 6, 7):
        s = generate_scene(seed, SyntheticConfig(width=res, height=res, num_views=V, rig="forward",
                                                 supersample=1, shadow_samples=1))
        rays = torch.linalg.inv(s.cameras.Ks) @ pixel_grid(res, res)  # [V, 3, hw]
        c2w = torch.linalg.inv(s.cameras.viewmats)
        X = (c2w[:, :3, :3] @ (rays * s.depths.reshape(V, 1, -1)) + c2w[:, :3, 3:]).transpose(1, 2)  # [V, hw, 3]
        seen = torch.ones(V, res * res, dtype=torch.bool)  # the pixel's surface point is visible in every view
        for v in range(V):
            uv, z = s.cameras.project(X[v])  # [V, hw, 2], [V, hw]
            px = uv.floor().long()
            inside = ((px >= 0) & (px < res)).all(-1)
            d = s.depths.reshape(V, -1).gather(1, px[..., 1].clamp(0, res - 1) * res + px[..., 0].clamp(0, res - 1))
            seen[v] = (inside & ((d - z).abs() < 0.03 * z)).all(0)
        enc = torch.cat([f(X * fr) for fr in (0.7, 1.5, 3.0) for f in (torch.sin, torch.cos)], -1)  # [V, hw, 18]
        feats = F.normalize(enc.transpose(1, 2).reshape(1, V, 18, res, res), dim=2)
        invd = inverse_depth_candidates(torch.tensor([s.near]), torch.tensor([s.far]), 32)
        wrong = s.cameras.viewmats.clone()
        wrong[:, :3, :3] = wrong[:, :3, :3].transpose(1, 2)
        for cams, acc in ((s.cameras.viewmats, good), (wrong, bad)):
            cost = plane_sweep_correlation(feats, cams[None], s.cameras.Ks[None], invd, 3)  # [1, V, D, h, w]
            depth = 1.0 / invd[0][cost[0].argmax(1)]  # [V, h, w]
            rel = ((depth - s.depths).abs() / s.depths).reshape(V, -1)
            acc.append(float((rel[seen] < 0.1).float().mean()))
    assert sum(good) / 4 > 0.75 and min(good) > 0.6, good
    assert sum(good) / 4 > sum(bad) / 4 + 0.15, (good, bad)


def test_plane_sweep_single_view_is_zero():
    f = torch.randn(1, 1, 4, 8, 8)
    out = plane_sweep_correlation(f, torch.eye(4)[None, None], torch.eye(3)[None, None],
                                  torch.tensor([[1.0, 0.5]]), 3)
    assert out.shape == (1, 1, 2, 8, 8) and not bool(out.any())


def test_untrained_head_puts_gaussians_on_the_pixel_rays():
    """With the head's output layer at zero: each mean projects to its prediction-pixel centre at
    the backbone depth, scales are scale_init footprints, colours the area-averaged image."""
    torch.manual_seed(0)
    m = Predictor(PredictorConfig.preset("edge-t"))
    nn.init.zeros_(m.head.out.weight)
    images, viewmats, Ks, near, far = make_views(1, 2)
    with torch.no_grad():
        feats = m.backbone(images, viewmats, Ks, near, far)
        g = m(images, viewmats, Ks, near, far)
    s, h = m.prediction_stride, 32 // m.prediction_stride
    Kp = scale_intrinsics(Ks, 1 / s, 1 / s)
    for v in range(2):
        cams = Cameras(viewmats[0, v:v + 1], Kp[0, v:v + 1], h, h)
        sl = slice(v * h * h, (v + 1) * h * h)
        uv, z = cams.project(g.means[0, sl])
        ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(h) + 0.5, indexing="ij")
        assert torch.allclose(uv[0], torch.stack([xs.reshape(-1), ys.reshape(-1)], -1), atol=1e-3)
        assert torch.allclose(z[0], feats.depth[0, v].reshape(-1), rtol=1e-4)
        foot = feats.depth[0, v].reshape(-1, 1) / Kp[0, v, 0, 0]
        assert torch.allclose(g.log_scales[0, sl], torch.log(0.5 * foot).expand(-1, 3), atol=1e-4)
        rgb = F.interpolate(images[0, v].permute(2, 0, 1)[None], size=(h, h), mode="area")[0]
        assert torch.allclose(g.sh[0, sl, 0], rgb_to_sh_dc(rgb.reshape(3, -1).T), atol=1e-4)
    assert torch.allclose(g.opacity_logits, torch.zeros_like(g.opacity_logits))
    assert torch.allclose(g.sh[..., 1:, :], torch.zeros_like(g.sh[..., 1:, :]))


def test_predict_scene_matches_batched_forward():
    m = Predictor(PredictorConfig.preset("edge-t"))
    images, viewmats, Ks, near, far = make_views(1, 3)
    scene = Scene(images[0], Cameras(viewmats[0], Ks[0], 32, 32), near=1.0, far=8.0)
    g = m.predict(scene)
    with torch.no_grad():
        ref = m(images, viewmats, Ks, near, far)[0]
    # predict() runs in the normalised frame; the edge network is scale-equivariant, so the two agree
    assert g.batch_shape == ()
    for a, b in zip(g.tensors(), ref.tensors()):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("preset", ["edge-t", "edge-r"])
def test_prediction_invariant_to_world_similarity(preset):
    """Scaling (x 1000, e.g. metres -> millimetres), rotating and moving the world frame moves the
    prediction with it: predict(T scene) == T predict(scene)."""
    import math

    from foresplat.models.geometry import matrix_to_quat, quat_multiply

    torch.manual_seed(0)
    m = Predictor(PredictorConfig.preset(preset)).eval()
    images, viewmats, Ks, near, far = make_views(1, 3)
    scene = Scene(images[0], Cameras(viewmats[0].double(), Ks[0], 32, 32), near=1.0, far=8.0)
    s, a = 1000.0, 0.7
    R = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]], dtype=torch.float64)
    t = torch.tensor([5e4, -3e4, 2e4], dtype=torch.float64)
    # x_new = s R x + t; camera coordinates (and depths) scale by s: [Rc | tc] -> [Rc R^T | s tc - Rc R^T t]
    vm = viewmats[0].double().clone()
    Rc, tc = vm[:, :3, :3].clone(), vm[:, :3, 3].clone()
    vm[:, :3, :3] = Rc @ R.T
    vm[:, :3, 3] = s * tc - (Rc @ R.T @ t)
    moved = Scene(images[0], Cameras(vm, Ks[0], 32, 32), near=s * 1.0, far=s * 8.0)
    g, g2 = m.predict(scene), m.predict(moved)
    expect = (s * g.means.double() @ R.T + t)
    assert torch.allclose(g2.means.double(), expect, rtol=0, atol=1e-3 * s * float(g.means.abs().max()))
    assert torch.allclose(g2.log_scales, g.log_scales + math.log(s), atol=2e-3)
    assert torch.allclose(g2.opacity_logits, g.opacity_logits, atol=2e-3)
    assert torch.allclose(g2.sh[:, 0], g.sh[:, 0], atol=2e-3)
    qR = matrix_to_quat(R.float())
    q1 = torch.nn.functional.normalize(quat_multiply(qR.expand_as(g.quats), g.quats), dim=-1)
    q2 = torch.nn.functional.normalize(g2.quats, dim=-1)
    assert torch.allclose((q1 * q2).sum(-1).abs(), torch.ones(g.num), atol=2e-3)  # same rotation up to sign


# ---- registry and bad configs ------------------------------------------------------------------

@dataclass
class _FlatConfig(BackboneConfig):
    name: Literal["flat"] = "flat"
    channels: int = 4


class _FlatBackbone(Backbone[_FlatConfig]):
    """A minimal backbone (constant learned depth) to check that the head is backbone-agnostic."""

    def __init__(self, config):
        super().__init__(config)
        self.proj = nn.Conv2d(3, config.channels, 1)
        self.log_depth = nn.Parameter(torch.tensor(1.0))
        self.out_channels, self.divisor = config.channels, config.prediction_stride

    def forward(self, images, viewmats, Ks, near, far):
        B, V, H, W, _ = images.shape
        s = self.config.prediction_stride
        x = F.avg_pool2d(images.reshape(B * V, H, W, 3).permute(0, 3, 1, 2), s)
        f = self.proj(x).reshape(B, V, -1, H // s, W // s)
        depth = self.log_depth.exp().expand(B, V, H // s, W // s)
        return BackboneOutput(depth, torch.ones_like(depth), f)


def test_a_registered_backbone_works_with_the_shared_head(monkeypatch, tmp_path):
    monkeypatch.setattr(backbone_module, "_REGISTRY", dict(backbone_module._REGISTRY))
    register_backbone("flat", _FlatConfig)(_FlatBackbone)
    cfg = PredictorConfig(backbone=_FlatConfig(prediction_stride=4), head=HeadConfig(hidden_channels=8))
    m = Predictor(cfg)
    g = m(*make_views(1, 2))
    assert g.num == 2 * 8 * 8
    m.save(tmp_path / "flat")
    assert Predictor.from_checkpoint(tmp_path / "flat").config == cfg
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("flat", _FlatConfig)(type("Other", (_FlatBackbone,), {}))


@pytest.mark.parametrize("change, match", [
    (dict(prediction_stride=3), "prediction_stride"),
    (dict(feature_stride=8), "feature_stride"),
    (dict(feature_stride=2, prediction_stride=4), "coarser than feature_stride"),
    (dict(num_depths=1), "num_depths"),
    (dict(encoder_channels=(16, 0)), "encoder_channels"),
    (dict(num_sources=0), "num_sources"),
])
def test_impossible_backbone_settings_raise(change, match):
    with pytest.raises(ValueError, match=match):
        build_backbone(replace(EdgeConfig(), **change))


def test_bad_configs_and_inputs_raise_clear_errors():
    base = PredictorConfig.preset("edge-t").to_dict()
    with pytest.raises(ValueError, match="unknown backbone 'vit'"):
        PredictorConfig.from_dict({**base, "backbone": {**base["backbone"], "name": "vit"}})
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['width'\]"):
        PredictorConfig.from_dict({**base, "head": {**base["head"], "width": 3}})
    with pytest.raises(ValueError, match="backbone.num_depths: expected an int"):
        PredictorConfig.from_dict({**base, "backbone": {**base["backbone"], "num_depths": "many"}})
    with pytest.raises(ValueError, match="unknown preset"):
        PredictorConfig.preset("edge-xxl")
    with pytest.raises(ValueError, match="sh_degree"):
        HeadConfig(sh_degree=3).validate()

    @dataclass
    class Other(BackboneConfig):
        name: str = "nope"

    with pytest.raises(ValueError, match="unknown backbone 'nope'"):
        build_backbone(Other())
    m = Predictor(PredictorConfig.preset("edge-t"))
    images, viewmats, Ks, near, far = make_views(1, 2, H=36, W=32)
    with pytest.raises(ValueError, match="multiples of 8"):
        m(images, viewmats, Ks, near, far)
    images, viewmats, Ks, near, far = make_views(1, 2)
    with pytest.raises(ValueError, match="values in"):
        m(images * 2, viewmats, Ks, near, far)
    with pytest.raises(ValueError, match="near/far"):
        m(images, viewmats, Ks, far, near)
    with pytest.raises(ValueError, match="Ks"):
        m(images, viewmats, Ks[:, :1], near, far)


def test_checkpoint_from_another_schema_or_kind_is_refused(tmp_path):
    m = Predictor(PredictorConfig.preset("edge-t"))
    m.save(tmp_path / "m")
    meta_path = tmp_path / "m.json"
    meta = json.loads(meta_path.read_text())
    from foresplat.io.checkpoint import meta_digest

    def write(m, sign=True):  # as another foresplat version would have written it (a valid meta_sha256)
        meta_path.write_text(json.dumps({**m, "meta_sha256": meta_digest(m)} if sign else m))

    write({**meta, "predictor_schema": 999})
    with pytest.raises(ValueError, match="schema 999"):
        Predictor.from_checkpoint(tmp_path / "m")
    write({**meta, "kind": "optimizer"})
    with pytest.raises(ValueError, match="kind is 'optimizer'"):
        Predictor.from_checkpoint(tmp_path / "m")
    other = PredictorConfig.preset("edge-s").to_dict()
    write({**meta, "config": other})
    with pytest.raises(ValueError, match="config does not fit the stored weights"):
        Predictor.from_checkpoint(tmp_path / "m")


def test_checkpoint_config_is_covered_by_the_checksum_and_checked_before_allocation(tmp_path, monkeypatch):
    """An edited JSON config is refused (meta_sha256); a legacy checkpoint without meta_sha256 still
    loads, and a config that does not fit its weights is refused before the model is allocated."""
    m = Predictor(PredictorConfig.preset("edge-t"))
    m.save(tmp_path / "m")
    meta_path = tmp_path / "m.json"
    meta = json.loads(meta_path.read_text())
    assert len(meta["meta_sha256"]) == 64
    huge = json.loads(json.dumps(meta["config"]).replace('"hidden_channels": 24', '"hidden_channels": 65536'))
    assert huge != meta["config"]
    meta_path.write_text(json.dumps({**meta, "config": huge}))
    with pytest.raises(ValueError, match="meta_sha256"):
        Predictor.from_checkpoint(tmp_path / "m")
    legacy = {k: v for k, v in meta.items() if k != "meta_sha256"}
    meta_path.write_text(json.dumps(legacy))
    assert Predictor.from_checkpoint(tmp_path / "m").config == m.config
    built = []
    real_init = Predictor.__init__

    def spy(self, config):
        built.append(torch.empty(0).device.type)  # the default device the model is built on
        real_init(self, config)

    monkeypatch.setattr(Predictor, "__init__", spy)
    meta_path.write_text(json.dumps({**legacy, "config": huge}))
    with pytest.raises(ValueError, match="config does not fit the stored weights"):
        Predictor.from_checkpoint(tmp_path / "m")
    assert built == ["meta"]  # only the shape check ran: no real allocation


def test_photometric_sweep_finds_true_depth_on_textured_pixels():
    """plane_sweep_photometric's minimum lies at the ray-traced depth for most textured pixels."""
    from foresplat.data.sfm_like import _gradient_magnitude
    from foresplat.data.synthetic import SyntheticConfig, generate_scene
    from foresplat.models.cost_volume import plane_sweep_photometric

    scene = generate_scene(1_000_008, SyntheticConfig(width=48, height=48, num_views=5, rig="forward",
                                                      supersample=1, shadow_samples=1))
    D = 64
    invd = inverse_depth_candidates(torch.tensor([scene.near]), torch.tensor([scene.far]), D)  # [1, D]
    imgs = scene.images.permute(0, 3, 1, 2)[None]  # [1, V, 3, H, W]
    cost = plane_sweep_photometric(imgs, scene.cameras.viewmats[None], scene.cameras.Ks[None], invd, 4)
    assert cost.shape == (1, 5, D, 48, 48) and float(cost.min()) >= 0
    cost = F.avg_pool2d(cost[0].reshape(-1, 1, 48, 48), 3, 1, 1, count_include_pad=False).reshape(5, D, 48, 48)
    best = (1.0 / invd[0])[cost.argmin(dim=1)]  # [V, H, W] depth of the cheapest plane (3x3 window)
    truth = scene.depths
    textured = (_gradient_magnitude(scene.images) > 0.1) & (truth > 0) & (truth < scene.far)
    assert textured.sum() > 200
    hit = float((((best - truth).abs() / truth)[textured] < 0.1).float().mean())
    rnd = (1.0 / invd[0])[torch.randint(0, D, truth.shape, generator=torch.Generator().manual_seed(0))]
    chance = float((((rnd - truth).abs() / truth)[textured] < 0.1).float().mean())
    assert hit > 0.5 and hit > 3 * chance  # measured: 0.65 against 0.12


def test_depth_consistency_keeps_what_other_views_confirm():
    from foresplat.gaussians import Gaussians
    from foresplat.models.filters import depth_consistent, keep_depth_consistent
    from foresplat.models.geometry import pixel_grid

    # three cameras side by side looking at the plane z = 4 (the surface every view sees)
    V, H, W, s = 3, 16, 24, 2
    eye = torch.tensor([[-0.4, 0.0, 0.0], [0.0, 0.0, 0.0], [0.4, 0.0, 0.0]])
    viewmats = look_at(eye, eye + torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, -1.0, 0.0]))
    Ks = torch.tensor([[20.0, 0, W / 2], [0, 20.0, H / 2], [0, 0, 1]]).expand(V, 3, 3).clone()
    h, w = H // s, W // s
    Kg = scale_intrinsics(Ks, 1 / s, 1 / s)
    rays = torch.linalg.inv(Kg) @ pixel_grid(h, w)  # [V, 3, hw] camera rays with z = 1
    cam = (rays * 4.0).transpose(1, 2)  # every pixel's point on the plane, camera frame
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    means = torch.einsum("vji,vnj->vni", R, cam - t[:, None]).reshape(-1, 3)  # world
    keep = depth_consistent(means, viewmats, Kg, h, w)
    # the middle view overlaps both neighbours everywhere: all its points are confirmed
    assert keep.reshape(V, -1)[1].all() and keep.float().mean() > 0.6
    # the columns of an outer view that no other camera sees are not confirmed (nothing to check against)
    seen_by_middle = (torch.einsum("ij,nj->ni", Kg[1], torch.einsum("ij,nj->ni", R[1], means) + t[1])[:, 0]
                      / 4.0).reshape(V, -1)
    assert not keep.reshape(V, -1)[0][(seen_by_middle[0] < 0) | (seen_by_middle[0] >= w)].any()
    # a point pulled to 60% of its depth along its ray disagrees with every other view
    moved = means.clone().reshape(V, -1, 3)
    centre = -torch.einsum("ij,j->i", R[1].T, t[1])
    moved[1, 5] = centre + 0.6 * (moved[1, 5] - centre)
    keep2 = depth_consistent(moved.reshape(-1, 3), viewmats, Kg, h, w)
    assert not keep2.reshape(V, -1)[1, 5] and keep2.reshape(V, -1)[1].sum() == h * w - 1
    # on a Scene: the grid is inferred from the count; anything not pixel-aligned is refused
    scene = Scene(images=torch.rand(V, H, W, 3), cameras=Cameras(viewmats, Ks, W, H), near=1.0, far=10.0)
    n = means.shape[0]
    g = Gaussians(means, torch.tensor([1.0, 0, 0, 0]).expand(n, 4), torch.zeros(n, 3), torch.zeros(n),
                  torch.zeros(n, 1, 3))
    assert keep_depth_consistent(g, scene).num == int(keep.sum())
    with pytest.raises(ValueError, match="not one per pixel"):
        keep_depth_consistent(g.select(torch.arange(n - 1)), scene)
    with pytest.raises(ValueError, match="no Gaussian"):
        keep_depth_consistent(g.replace(means=means * torch.tensor([1.0, 1.0, -1.0])), scene)


def test_keep_foreground_drops_the_background_colour():
    from foresplat.gaussians import Gaussians
    from foresplat.models.filters import keep_foreground

    rgb = torch.tensor([[0.0, 0.0, 0.0], [0.03, 0.0, 0.05], [0.5, 0.02, 0.0], [1.0, 1.0, 1.0], [0.97, 1.0, 0.99]])
    n = rgb.shape[0]
    g = Gaussians(torch.zeros(n, 3), torch.tensor([1.0, 0, 0, 0]).expand(n, 4), torch.zeros(n, 3), torch.zeros(n),
                  rgb_to_sh_dc(rgb)[:, None])
    assert torch.allclose(keep_foreground(g, None).means, g.means[[2, 3, 4]])  # black: the renderer's default
    assert keep_foreground(g, (1.0, 1.0, 1.0)).num == 3  # a white background keeps the dark ones
    with pytest.raises(ValueError, match="background colour"):
        keep_foreground(g.select(torch.tensor([0, 1])), None)
