"""Functional Adam (vs torch.optim.Adam), lr schedule, SSIM / loss, initialisations: no renderer needed."""

from __future__ import annotations

import math

import pytest
import torch

from foresplat.cameras import Cameras, look_at
from foresplat.data.scene import Scene
from foresplat.gaussians import FIELDS, Gaussians, rgb_to_sh_dc
from foresplat.refine import (AdamLRs, RefineConfig, adam_init, adam_update, expon_lr, init_from_points,
                              init_random, knn_mean_sq_dist, photometric_loss, psnr, scene_bounds, ssim)
from foresplat.refine.loss import gaussian_window

LRS = AdamLRs(means=1e-2, quats=3e-3, log_scales=5e-3, opacity_logits=5e-2, sh_dc=2.5e-2, sh_rest=1.25e-3)


def _random_gaussians(n: int, k: int, seed: int, dtype=torch.float64) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return Gaussians(r(n, 3), r(n, 4), r(n, 3), r(n), r(n, k, 3))


def _toy_loss(tensors, targets) -> torch.Tensor:
    """A non-quadratic loss with different curvature per field (the trajectory matters)."""
    total = 0.0
    for i, (p, t) in enumerate(zip(tensors, targets)):
        total = total + ((p - t) ** 2 * (1 + i)).sum() + 0.3 * torch.sin(3 * p).sum() + 0.1 * (p ** 4).sum()
    return total


@pytest.mark.parametrize("inplace", [True, False])
def test_matches_torch_adam_float64(inplace):
    k = 9  # SH degree 2: DC and higher bands in one tensor, two groups
    g = _random_gaussians(40, k, 0)
    tgt = _random_gaussians(40, k, 1)
    betas, eps = (0.85, 0.995), 1e-15
    # torch.optim.Adam with the sh tensor split into DC / rest parameters
    ref = [t.clone().requires_grad_(True) for t in (g.means, g.quats, g.log_scales, g.opacity_logits)]
    ref += [g.sh[:, :1].clone().requires_grad_(True), g.sh[:, 1:].clone().requires_grad_(True)]
    lrs = [LRS.means, LRS.quats, LRS.log_scales, LRS.opacity_logits, LRS.sh_dc, LRS.sh_rest]
    opt = torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(ref, lrs)], betas=betas, eps=eps,
                           foreach=False)
    ref_targets = list(tgt.tensors()[:4]) + [tgt.sh[:, :1], tgt.sh[:, 1:]]
    state = adam_init(g)
    cur = g.clone()
    for step in range(300):
        opt.zero_grad()
        _toy_loss(ref, ref_targets).backward()
        opt.step()
        params = cur.map(lambda t: t.detach().requires_grad_(True))
        loss = _toy_loss(list(params.tensors()[:4]) + [params.sh[:, :1], params.sh[:, 1:]], ref_targets)
        grads = Gaussians.from_tensors(torch.autograd.grad(loss, params.tensors()))
        before = cur.clone()
        new, state = adam_update(params, grads, state, LRS, step, betas=betas, eps=eps, inplace=inplace)
        if inplace:
            assert new.means is params.means  # updated in place
        else:
            assert torch.equal(params.means.detach(), before.means)  # inputs untouched
        cur = new.detach()
        assert state.step == step + 1
    got = list(cur.tensors()[:4]) + [cur.sh[:, :1], cur.sh[:, 1:]]
    for name, a, b in zip(list(FIELDS[:4]) + ["sh_dc", "sh_rest"], got, ref):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-13, msg=f"{name} differs")
    # the DC and rest moments are torch's too
    torch.testing.assert_close(state.exp_avg_sq.sh[:, 1:], opt.state[ref[5]]["exp_avg_sq"], rtol=1e-12, atol=0)


def test_differentiable_mode_same_values_and_schedule_callable():
    g = _random_gaussians(10, 4, 2)
    grads = _random_gaussians(10, 4, 3)
    state = adam_init(g)
    sched = lambda k: RefineConfig().lrs(k, extent=2.0, total_steps=50)  # noqa: E731
    a, sa = adam_update(g, grads, state, sched, 7)
    b, sb = adam_update(g, grads, state, sched(7), differentiable=True)
    for x, y in zip(a.tensors() + sa.exp_avg.tensors() + sa.exp_avg_sq.tensors(),
                    b.tensors() + sb.exp_avg.tensors() + sb.exp_avg_sq.tensors()):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-15)
    assert sa.step == sb.step == 1


def test_sh_groups_use_their_own_lr():
    g = _random_gaussians(5, 16, 4)
    grads = _random_gaussians(5, 16, 5)
    lrs = AdamLRs(0.0, 0.0, 0.0, 0.0, sh_dc=0.1, sh_rest=0.0)
    for diff in (False, True):
        new, _ = adam_update(g, grads, adam_init(g), lrs, differentiable=diff)
        torch.testing.assert_close(new.sh[:, 1:], g.sh[:, 1:], rtol=0, atol=0)
        torch.testing.assert_close(new.means, g.means, rtol=0, atol=0)
        # first Adam step moves by lr * sign(grad) (|grad| >> eps)
        torch.testing.assert_close(new.sh[:, 0] - g.sh[:, 0], -0.1 * grads.sh[:, 0].sign(), rtol=1e-9, atol=1e-12)


def test_unrolled_adam_gradient_matches_finite_differences():
    """Second-order: d loss(p_K) / d p_0 through K differentiable Adam updates with exact grads."""
    g0 = _random_gaussians(3, 4, 6)
    tgt = _random_gaussians(3, 4, 7)
    lrs = AdamLRs(0.05, 0.02, 0.03, 0.04, 0.05, 0.01)

    def unrolled(tensors, create_graph):
        g = Gaussians.from_tensors(tensors)
        state = adam_init(g)
        for k in range(3):
            loss = _toy_loss(g.tensors(), tgt.tensors())
            grads = Gaussians.from_tensors(torch.autograd.grad(loss, g.tensors(), create_graph=create_graph))
            g, state = adam_update(g, grads, state, lrs, k, differentiable=True)
            if not create_graph:
                g = g.map(lambda t: t.detach().requires_grad_(True))
        return _toy_loss(g.tensors(), tgt.tensors())

    x0 = [t.clone().requires_grad_(True) for t in g0.tensors()]
    meta = torch.autograd.grad(unrolled(x0, True), x0)
    h = 1e-6
    for fi, t in enumerate(x0):
        flat = t.detach().reshape(-1)
        for j in range(0, flat.numel(), max(1, flat.numel() // 4)):
            vals = []
            for s in (h, -h):
                xs = [u.detach().clone() for u in x0]
                xs[fi].view(-1)[j] += s
                xs = [u.requires_grad_(True) for u in xs]
                vals.append(float(unrolled(xs, False).detach()))
            fd = (vals[0] - vals[1]) / (2 * h)
            assert math.isclose(float(meta[fi].reshape(-1)[j]), fd, rel_tol=1e-5, abs_tol=1e-6), (FIELDS[fi], j)


def test_zero_gradient_entries_give_finite_second_order():
    p = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64).unsqueeze(-1)
    g = Gaussians(p, torch.randn(4, 4, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64),
                  torch.zeros(4, dtype=torch.float64), torch.zeros(4, 1, 3, dtype=torch.float64))
    loss = ((p * mask) ** 2).sum()
    (gr,) = torch.autograd.grad(loss, p, create_graph=True)
    grads = Gaussians(gr, *(torch.zeros_like(t) for t in g.tensors()[1:]))
    new, _ = adam_update(g, grads, adam_init(g), LRS, differentiable=True)
    (meta,) = torch.autograd.grad((new.means ** 2).sum(), p)
    assert torch.isfinite(meta).all()


# ---- schedule -------------------------------------------------------------------------------------
def test_expon_lr_values():
    assert expon_lr(0, 1e-2, 1e-4, 100) == pytest.approx(1e-2, rel=1e-12)
    assert expon_lr(100, 1e-2, 1e-4, 100) == pytest.approx(1e-4, rel=1e-12)
    assert expon_lr(50, 1e-2, 1e-4, 100) == pytest.approx(1e-3, rel=1e-12)  # log-linear: geometric mean
    assert expon_lr(500, 1e-2, 1e-4, 100) == pytest.approx(1e-4, rel=1e-12)  # clamped after the run
    assert expon_lr(-1, 1e-2, 1e-4, 100) == 0.0
    # 3DGS warm-up: delay_mult at step 0, full rate after delay_steps
    assert expon_lr(0, 1e-2, 1e-4, 100, delay_steps=10, delay_mult=0.01) == pytest.approx(1e-4)
    assert expon_lr(10, 1e-2, 1e-4, 100, 10, 0.01) == pytest.approx(1e-2 * (1e-4 / 1e-2) ** 0.1)


def test_config_lrs_defaults_and_extent():
    cfg = RefineConfig(steps=1000)
    first, last = cfg.lrs(0, extent=5.0), cfg.lrs(999, extent=5.0)
    assert first.means == pytest.approx(1.6e-4 * 5.0 * (0.01 ** (1 / 1000)), rel=1e-12)  # 3DGS iteration 1
    assert last.means == pytest.approx(1.6e-6 * 5.0, rel=1e-12)
    assert cfg.lrs(0, 1.0, total_steps=10).means > cfg.lrs(5, 1.0, total_steps=10).means
    assert (first.log_scales, first.quats, first.opacity_logits, first.sh_dc, first.sh_rest) == \
        (5e-3, 1e-3, 5e-2, 2.5e-3, 2.5e-3 / 20)
    assert cfg.betas == (0.9, 0.999) and cfg.eps == 1e-15
    with pytest.raises(ValueError, match="views_per_step"):
        RefineConfig(views_per_step=0).validate()
    with pytest.raises(ValueError, match="lr_quats"):
        RefineConfig(lr_quats=float("nan")).validate()


# ---- loss ----------------------------------------------------------------------------------------
def test_ssim_matches_pytorch_msssim():
    from pytorch_msssim import ssim as ref_ssim

    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 40, 33, 3, generator=g, dtype=torch.float64)
    b = (a + 0.2 * torch.randn(3, 40, 33, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(a, b)
    ref = ref_ssim(a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2), data_range=1.0)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-7)  # theirs: a float32 window
    win = gaussian_window(11, 1.5, torch.float64, a.device).view(1, 1, 1, 11).repeat(3, 1, 1, 1)
    exact = ref_ssim(a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2), data_range=1.0, win=win)
    torch.testing.assert_close(ours, exact, rtol=1e-12, atol=1e-13)
    per = ssim(a, b, reduce=False)
    assert per.shape == (3,)
    torch.testing.assert_close(per[1], ref_ssim(a[1:2].permute(0, 3, 1, 2), b[1:2].permute(0, 3, 1, 2),
                                                data_range=1.0, win=win), rtol=1e-12, atol=1e-13)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-12)


def test_ssim_twice_differentiable_and_small_images():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 12, 13, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.rand(1, 12, 13, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: ssim(x, b), (a,))
    assert torch.autograd.gradgradcheck(lambda x: photometric_loss(x, b), (a,))
    tiny = torch.rand(2, 6, 8, 3, generator=g)  # smaller than the 11-tap window: it shrinks to 5
    v = ssim(tiny, tiny.flip(1))
    assert torch.isfinite(v) and float(ssim(tiny, tiny)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("size", [(30, 27), (100, 97)])  # banded-matmul and shifted-sum filters
def test_fused_ssim_matches_autograd(size):
    from pytorch_msssim import ssim as ref_ssim

    from foresplat.refine.loss import SSIMTargetStats

    g = torch.Generator().manual_seed(2)
    h, w = size
    a = torch.rand(2, h, w, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.rand(2, h, w, 3, generator=g, dtype=torch.float64)
    slow = photometric_loss(a, b)
    fast = photometric_loss(a, b, fused=True)
    cached = photometric_loss(a, b, fused=True, target_stats=SSIMTargetStats.of(b))
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(cached, slow, rtol=1e-12, atol=1e-14)
    (g_slow,) = torch.autograd.grad(slow, a)
    (g_fast,) = torch.autograd.grad(cached, a)
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-9, atol=1e-15)
    win = gaussian_window(11, 1.5, torch.float64, a.device).view(1, 1, 1, 11).repeat(3, 1, 1, 1)
    ref = ref_ssim(a.detach().permute(0, 3, 1, 2), b.permute(0, 3, 1, 2), data_range=1.0, win=win)
    torch.testing.assert_close(ssim(a, b, fused=True), ref, rtol=1e-12, atol=1e-13)


def test_fused_ssim_gradcheck_and_once_differentiable():
    g = torch.Generator().manual_seed(3)
    a = torch.rand(1, 13, 12, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.rand(1, 13, 12, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: ssim(x, b, fused=True, reduce=False), (a,))
    (gr,) = torch.autograd.grad(ssim(a, b, fused=True), a, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(gr.sum(), a)


def test_photometric_loss_and_psnr():
    a = torch.full((2, 16, 16, 3), 0.5)
    b = a + 0.1
    assert float(photometric_loss(a, b, ssim_weight=0.0)) == pytest.approx(0.1, rel=1e-5)
    expected = 0.8 * 0.1 + 0.2 * (1 - float(ssim(a, b)))
    assert float(photometric_loss(a, b)) == pytest.approx(expected, rel=1e-6)
    assert psnr(a, b).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)


# ---- initialisations ---------------------------------------------------------------------------
def test_knn_matches_bruteforce_and_chunks():
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(300, 3, generator=g, dtype=torch.float64)
    d2 = torch.cdist(pts, pts).pow(2)
    d2.fill_diagonal_(float("inf"))
    expect = d2.topk(3, largest=False).values.mean(1)
    from foresplat.refine.init import knn_mean_sq_dist_bruteforce

    torch.testing.assert_close(knn_mean_sq_dist(pts, 3), expect)
    torch.testing.assert_close(knn_mean_sq_dist_bruteforce(pts, 3, chunk_elems=1000), expect)
    torch.testing.assert_close(knn_mean_sq_dist(pts[:2], 3), torch.full((2,), float(d2[0, 1]), dtype=torch.float64))


@pytest.mark.parametrize("n,k", [(1, 3), (3, 3), (4, 3), (257, 3), (500, 1), (500, 8)])
def test_knn_kdtree_matches_bruteforce_with_duplicates_and_grids(n, k):
    """The KD-tree kNN equals the all-pairs reference, duplicates and equidistant grid points included."""
    from foresplat.refine.init import knn_mean_sq_dist_bruteforce

    g = torch.Generator().manual_seed(n + k)
    pts = torch.randn(n, 3, generator=g)
    if n > 10:
        pts[: n // 5] = pts[n // 5: 2 * (n // 5)]  # exact duplicates
        pts[-27:] = torch.stack(torch.meshgrid(*[torch.arange(3.0)] * 3, indexing="ij"), -1).reshape(27, 3)
    got = knn_mean_sq_dist(pts, k)
    assert got.dtype == pts.dtype and got.shape == (n,)
    torch.testing.assert_close(got, knn_mean_sq_dist_bruteforce(pts, k), rtol=1e-5, atol=1e-6)


def test_knn_init_is_not_quadratic():
    """200k random points: the old all-pairs search took ~3 minutes here; the KD-tree ~1 s."""
    import time

    from foresplat.refine import init_random

    t0 = time.perf_counter()
    g0 = init_random(torch.tensor([[0.0, 0, 0], [1, 1, 1]]), 200_000)
    assert g0.num == 200_000 and time.perf_counter() - t0 < 30


def test_init_from_points():
    pts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.0, 2, 0], [0.0, 0, 3], [5.0, 5, 5]])
    cols = torch.rand(5, 3)
    g = init_from_points(pts, cols, sh_degree=1)
    g.validate()
    assert g.num == 5 and g.sh.shape == (5, 4, 3)
    torch.testing.assert_close(g.sh[:, 0], rgb_to_sh_dc(cols))
    assert torch.all(g.sh[:, 1:] == 0)
    torch.testing.assert_close(g.opacities(), torch.full((5,), 0.1))
    torch.testing.assert_close(g.unit_quats(), torch.tensor([[1.0, 0, 0, 0]]).expand(5, 4))
    # point 0: neighbours at distances 1, 2, 3 -> rms = sqrt(14/3)
    torch.testing.assert_close(g.scales()[0], torch.full((3,), math.sqrt(14 / 3)))
    with pytest.raises(ValueError, match="non-empty"):
        init_from_points(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="NaN"):
        init_from_points(torch.tensor([[0.0, float("nan"), 0]]))
    single = init_from_points(torch.zeros(1, 3))
    assert torch.isfinite(single.log_scales).all()


def test_init_random_deterministic_and_in_bounds():
    bounds = torch.tensor([[-1.0, -2.0, 0.0], [1.0, 2.0, 0.5]])
    a, b = init_random(bounds, 500, seed=3), init_random(bounds, 500, seed=3)
    assert torch.equal(a.means, b.means) and torch.equal(a.sh, b.sh)
    assert not torch.equal(a.means, init_random(bounds, 500, seed=4).means)
    assert bool((a.means >= bounds[0]).all() and (a.means <= bounds[1]).all())


def test_scene_bounds_from_cameras_and_points():
    eye = torch.tensor([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0], [-4.0, 0, 0.5]])
    target = torch.tensor([0.5, 0.0, 0.0])
    view = look_at(eye, target.expand(4, 3), torch.tensor([0.0, 0, 1.0]))
    view[2] = look_at(eye[2:3], target[None], torch.tensor([0.0, 1.0, 0]))[0]
    K = torch.tensor([[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]]).expand(4, 3, 3)
    scene = Scene(torch.zeros(4, 64, 64, 3), Cameras(view, K, 64, 64))
    b = scene_bounds(scene)
    center = b.mean(0)
    torch.testing.assert_close(center, target, atol=1e-4, rtol=0)
    half = float((b[1] - b[0])[0] / 2)
    dist = float((eye - target).norm(dim=-1).median())
    assert half == pytest.approx(dist * 32 / 50, rel=1e-4)
    pts = torch.rand(1000, 3) * torch.tensor([1.0, 2.0, 3.0])
    scene.points = pts
    b = scene_bounds(scene)
    assert bool((b[0] < 0.05).all() and (b[1] > torch.tensor([0.95, 1.9, 2.85])).all())
