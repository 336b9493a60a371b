"""Baselines of the real-capture comparison: SfM-like synthetic points and the equal-count points start."""

from __future__ import annotations

from dataclasses import replace

import torch

from foresplat.data.sfm_like import SfmLikeConfig, _gradient_magnitude, sfm_like_points
from foresplat.data.synthetic import SyntheticConfig, generate_scene
from foresplat.evaluate.protocol import EvalConfig, MethodSpec, _initialise
from foresplat.refine import RefineConfig


def _scene():
    return generate_scene(1_000_003, SyntheticConfig(width=32, height=32, num_views=4, supersample=1,
                                                     shadow_samples=1, points_per_view=400))


def test_sfm_like_points_prefer_texture_add_noise_and_outliers():
    scene = _scene()
    out = sfm_like_points(scene, SfmLikeConfig(depth_noise=0.02, outlier_fraction=0.1, seed=3))
    assert out.points.shape[0] < scene.points.shape[0]  # flat pixels lose points
    assert out.point_views.shape == out.points.shape[:1] and out.point_colors.shape == out.points.shape
    # kept points sit on textured pixels more often than the exact ones do
    def mean_grad(s):
        uv, _ = s.cameras.project(s.points)
        ar = torch.arange(s.points.shape[0])
        u = uv[s.point_views, ar, 0].floor().long().clamp(0, s.width - 1)
        v = uv[s.point_views, ar, 1].floor().long().clamp(0, s.height - 1)
        return float(_gradient_magnitude(s.images)[s.point_views, v, u].mean())
    no_outliers = sfm_like_points(scene, SfmLikeConfig(depth_noise=0.0, outlier_fraction=0.0, seed=3))
    assert mean_grad(no_outliers) > mean_grad(scene)
    # without noise or outliers the kept points are exact; with noise they move along their rays
    assert torch.isin(no_outliers.points, scene.points).all()
    noisy = sfm_like_points(scene, SfmLikeConfig(depth_noise=0.05, outlier_fraction=0.0, seed=3))
    c = scene.cameras.centers()[noisy.point_views]
    d_exact = (no_outliers.points - c).norm(dim=-1)
    d_noisy = (noisy.points - c).norm(dim=-1)
    ratio = torch.log(d_noisy / d_exact)
    assert 0.03 < float(ratio.std()) < 0.07
    ray_exact = torch.nn.functional.normalize(no_outliers.points - c, dim=-1)
    ray_noisy = torch.nn.functional.normalize(noisy.points - c, dim=-1)
    assert torch.allclose(ray_exact, ray_noisy, atol=1e-4)
    # outliers: about the requested fraction lands far from every exact point
    outl = sfm_like_points(scene, SfmLikeConfig(depth_noise=0.0, outlier_fraction=0.1, seed=3))
    far = torch.cdist(outl.points.double(), scene.points.double()).min(dim=1).values > 1e-4
    assert 0.05 < float(far.float().mean()) <= 0.1 + 1e-6


def test_points_n_baseline_matches_the_learned_count_and_sfm_points_refuses_real_scenes():
    scene = _scene()
    cfg = EvalConfig(steps=(0,), num_context=3, num_target=1, refine=RefineConfig(backend="reference"))
    g = _initialise(MethodSpec("points-n", "points-n"), scene, cfg, None, learned_count=100)
    assert g.num == 100
    full = _initialise(MethodSpec("points", "points"), scene, cfg, None, learned_count=100)
    assert full.num > 100
    g = _initialise(MethodSpec("sfm-points", "sfm-points"), scene, cfg, None, learned_count=None)
    assert 0 < g.num < full.num + 1
    from dataclasses import replace

    import pytest

    with pytest.raises(ValueError, match="sfm-points needs exact points"):
        _initialise(MethodSpec("sfm-points", "sfm-points"), replace(scene, depths=None), cfg, None, None)
    with pytest.raises(ValueError, match="points-n: needs a checkpoint"):
        _initialise(MethodSpec("points-n", "points-n"), scene, cfg, None, None)


def test_evaluate_scene_reports_counts_and_target_coverage(tmp_path):
    from foresplat.evaluate.protocol import build_methods, evaluate_scene, prepare_scene
    from foresplat.models import Predictor, PredictorConfig

    torch.manual_seed(0)
    Predictor(PredictorConfig.preset("edge-t")).save(tmp_path / "m", step=0)
    scene = prepare_scene(_scene(), None, 16)
    cfg = EvalConfig(steps=(0, 2), budgets=(1e3,), num_context=3, num_target=1,
                     baselines=("points", "points-n", "random"), refine=RefineConfig(backend="cpu"))
    methods = build_methods([f"tiny={tmp_path / 'm'}", f"tiny+points={tmp_path / 'm'}+points",
                             f"tiny+c={tmp_path / 'm'}+consistent"], cfg.baselines)
    assert [m.kind for m in methods[:3]] == ["checkpoint", "checkpoint+points", "checkpoint"]
    res = evaluate_scene(scene, methods, cfg)
    by = {m.method: m for m in res.methods}
    assert all(m.ok for m in res.methods), [m.error for m in res.methods]
    assert by["points-n"].num_gaussians == by["tiny"].num_gaussians == by["random"].num_gaussians
    assert by["points"].num_gaussians > by["points-n"].num_gaussians
    assert by["tiny+points"].num_gaussians == by["tiny"].num_gaussians + by["points"].num_gaussians
    assert 0 < by["tiny+c"].num_gaussians < by["tiny"].num_gaussians  # an untrained net: not every depth agrees
    from foresplat.data.scene import split_views
    from foresplat.models.filters import keep_foreground
    from foresplat.refine import scene_background

    images = scene.images.clone()
    images[:, :8, :8] = 0.0  # black corners: the colour the refiner composites onto (no masks)
    dark = replace(scene, images=images)
    (fg,) = evaluate_scene(dark, build_methods([f"tiny+f={tmp_path / 'm'}+foreground"], ()), cfg).methods
    context = split_views(dark, cfg.num_context, cfg.num_target, cfg.split, cfg.split_seed).context
    with torch.no_grad():
        g = Predictor.from_checkpoint(tmp_path / "m").predict(context)
    assert scene_background(context) is None and fg.ok
    assert fg.num_gaussians == keep_foreground(g, None).num < g.num
    for m in res.methods:
        assert 0.0 <= m.target_alpha <= 1.0
    assert by["tiny"].target_alpha > 0.5  # pixel-aligned Gaussians cover most of a nearby target view


def test_evaluation_uses_the_scene_background_like_refine():
    """A masked scene composited onto white is scored against renders on white (as `refine` does)."""
    from dataclasses import replace

    from foresplat.evaluate.protocol import build_methods, evaluate_scene

    scene = _scene()
    mask = (torch.arange(32)[None, :, None] < 16).float().expand(4, 32, 32).contiguous()  # left half = object
    images = torch.where(mask[..., None] > 0, scene.images, torch.ones_like(scene.images))
    scene = replace(scene, images=images, masks=mask)
    cfg = EvalConfig(steps=(0,), budgets=(1e3,), num_context=3, num_target=1, baselines=("random",),
                     random_count=1, refine=RefineConfig(backend="cpu"), save_grids=False)  # ~nothing drawn
    methods = build_methods([], cfg.baselines)
    on_white = evaluate_scene(scene, methods, cfg).methods[0].steps[0].psnr
    on_black = evaluate_scene(scene, methods, replace(cfg, auto_background=False)).methods[0].steps[0].psnr
    assert on_white > on_black + 2  # measured 5.0 against 2.5 dB


def test_scene_normalization_round_trips_and_keeps_projections():
    """apply() moves the cameras to the normalised frame (mean centre 0, near * far = 1) without
    changing what any camera sees; to_world() inverts from_world() on Gaussians."""
    from foresplat.data.normalize import SceneNormalization
    from foresplat.gaussians import Gaussians

    scene = _scene()
    norm = SceneNormalization.of(scene)
    ns = norm.apply(scene)
    assert torch.allclose(ns.cameras.centers().double().mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert abs(ns.near * ns.far - 1.0) < 1e-9
    uv, z = scene.cameras.project(scene.points)
    uv2, z2 = ns.cameras.project(ns.points)
    front = z > scene.near  # points far behind or beside a camera project to huge, ill-conditioned pixels
    assert front.float().mean() > 0.5
    assert torch.allclose(uv[front], uv2[front], atol=1e-3) and torch.allclose(z2, z * norm.scale, rtol=1e-4, atol=1e-6)
    g = Gaussians.from_activated(scene.points[:10], torch.tensor([1.0, 0, 0, 0]).expand(10, 4),
                                 torch.full((10, 3), 0.05), torch.full((10,), 0.5), torch.rand(10, 3))
    back = norm.to_world(norm.from_world(g))
    for a, b in zip(g.tensors(), back.tensors()):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(norm.from_world(g).scales(), g.scales() * norm.scale, rtol=1e-5)
