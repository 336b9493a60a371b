"""The pure-PyTorch reference rasterizer: gradients (first and second order), agreement with gsplat's
PyTorch projection and SH, hand-checked compositing cases and input validation."""

from __future__ import annotations

import math

import pytest
import torch

from foresplat import Cameras, Gaussians
from foresplat.render import (RenderOutput, available_backends, eval_sh_bases, project_gaussians,
                              rasterization, render, spherical_harmonics)
from foresplat.render.projection import covariance_3d

F64 = torch.float64


def tiny_scene(n=5, c=2, seed=0, dtype=F64, k=4):
    """Random Gaussians ~3 units in front of C slightly different cameras."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.4 + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.25 + 0.08
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.8 + 0.15
    sh = torch.randn(n, k, 3, generator=g, dtype=dtype) * 0.4
    viewmats = torch.eye(4, dtype=dtype).repeat(c, 1, 1)
    viewmats[:, :3, 3] = torch.randn(c, 3, generator=g, dtype=dtype) * 0.1
    Ks = torch.tensor([[14.0, 0, 6.0], [0, 13.0, 5.0], [0, 0, 1]], dtype=dtype).repeat(c, 1, 1)
    return means, quats, scales, opacities, sh, viewmats, Ks


def _render_all(width=12, height=10, sh_degree=1):
    def fn(means, quats, scales, opacities, sh, viewmats, Ks, bg):
        out = rasterization(means, quats, scales, opacities, sh, viewmats, Ks, width, height,
                            sh_degree=sh_degree, backgrounds=bg, backend="reference")
        return out.colors, out.alphas, out.depths
    return fn


def test_gradcheck_all_inputs():
    inputs = [t.requires_grad_() for t in tiny_scene(n=6, c=2, seed=1)]
    bg = torch.tensor([[0.2, 0.5, 0.1], [0.9, 0.3, 0.4]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(_render_all(), (*inputs, bg), atol=1e-6, fast_mode=True)


def test_gradcheck_sh_degree_3_and_rgb():
    inputs = [t.requires_grad_() for t in tiny_scene(n=4, c=1, seed=2, k=16)]
    assert torch.autograd.gradcheck(_render_all(9, 8, sh_degree=3), (*inputs, None), atol=1e-6,
                                    fast_mode=True)
    m, q, s, o, sh, v, k = tiny_scene(n=4, c=1, seed=3)
    rgb = torch.rand(4, 3, dtype=F64)

    def fn(rgb_, m_, v_):
        out = rasterization(m_, q, s, o, rgb_, v_, k, 9, 8, backend="reference")
        return out.colors, out.depths
    assert torch.autograd.gradcheck(fn, tuple(t.requires_grad_() for t in (rgb, m, v)), atol=1e-6)


def test_twice_differentiable():
    m, q, s, o, sh, v, k = tiny_scene(n=3, c=1, seed=4)
    inputs = tuple(t.requires_grad_() for t in (m, q, s, o, sh, v))

    def fn(m_, q_, s_, o_, sh_, v_):
        out = rasterization(m_, q_, s_, o_, sh_, v_, k, 8, 7, sh_degree=1, backend="reference")
        return out.colors, out.depths
    assert torch.autograd.gradgradcheck(fn, inputs, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_projection_matches_gsplat(seed):
    from gsplat.cuda._torch_impl import _fully_fused_projection

    g = torch.Generator().manual_seed(seed)
    n, c, w, h = 300, 3, 40, 30
    means = torch.randn(n, 3, generator=g, dtype=F64) * torch.tensor([3.0, 3.0, 2.0], dtype=F64)
    means[:, 2] += 2.0  # some in front, some behind, some off-screen
    quats = torch.randn(n, 4, generator=g, dtype=F64)
    scales = torch.exp(torch.randn(n, 3, generator=g, dtype=F64) - 2.5)
    viewmats = torch.eye(4, dtype=F64).repeat(c, 1, 1)
    viewmats[:, :3, :3] = torch.linalg.qr(torch.randn(c, 3, 3, generator=g, dtype=F64) * 0.05
                                          + torch.eye(3, dtype=F64))[0]
    viewmats[:, :3, 3] = torch.randn(c, 3, generator=g, dtype=F64) * 0.3
    Ks = torch.tensor([[35.0, 0, 21.0], [0, 33.0, 14.0], [0, 0, 1]], dtype=F64).repeat(c, 1, 1)
    ours = project_gaussians(means, quats, scales, viewmats, Ks, w, h, eps2d=0.3, near_plane=0.01)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covariance_3d(quats, scales), viewmats, Ks, w, h, eps2d=0.3, near_plane=0.01)
    assert torch.equal(ours.radii, radii.to(torch.int32))
    vis = ours.visible
    assert 0 < int(vis.sum()) < vis.numel()  # the scene exercises both culled and visible Gaussians
    torch.testing.assert_close(ours.depths, depths)
    torch.testing.assert_close(ours.means2d[vis], means2d[vis])
    torch.testing.assert_close(ours.conics[vis], conics[vis])


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat(degree):
    from gsplat.cuda._torch_impl import _spherical_harmonics

    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(500, 3, generator=g, dtype=F64) * 3.0  # unnormalized on purpose
    coeffs = torch.randn(500, 16, 3, generator=g, dtype=F64)
    torch.testing.assert_close(spherical_harmonics(degree, dirs, coeffs),
                               _spherical_harmonics(degree, dirs, coeffs))
    bases = eval_sh_bases(degree, torch.nn.functional.normalize(dirs, dim=-1))
    assert bases.shape == (500, (degree + 1) ** 2)


def _one_camera(width=11, height=9, f=20.0):
    viewmats = torch.eye(4, dtype=F64)[None]
    Ks = torch.tensor([[[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]]], dtype=F64)
    return viewmats, Ks


def _unit_quats(n):
    return torch.tensor([[1.0, 0, 0, 0]], dtype=F64).repeat(n, 1)


def test_single_gaussian_peak_and_falloff():
    viewmats, Ks = _one_camera()
    z, s, o = 2.0, 0.1, 0.7
    rgb = torch.tensor([[0.2, 0.6, 0.9]], dtype=F64)
    bg = torch.tensor([0.5, 0.5, 0.5], dtype=F64)
    out = rasterization(torch.tensor([[0.0, 0.0, z]], dtype=F64), _unit_quats(1),
                        torch.full((1, 3), s, dtype=F64), torch.tensor([o], dtype=F64), rgb,
                        viewmats, Ks, 11, 9, backgrounds=bg, backend="reference")
    assert isinstance(out, RenderOutput) and out.colors.shape == (1, 9, 11, 3)
    # centre pixel (5, 4) has its centre exactly on the projected mean: power 0
    torch.testing.assert_close(out.alphas[0, 4, 5, 0], torch.tensor(o, dtype=F64))
    torch.testing.assert_close(out.colors[0, 4, 5], o * rgb[0] + (1 - o) * bg)
    torch.testing.assert_close(out.depths[0, 4, 5, 0], torch.tensor(z, dtype=F64))
    # one pixel to the right: isotropic 2D variance (f s / z)^2 + 0.3
    var = (20.0 * s / z) ** 2 + 0.3
    torch.testing.assert_close(out.alphas[0, 4, 6, 0], torch.tensor(o * math.exp(-0.5 / var), dtype=F64))
    assert float(out.alphas.max()) == pytest.approx(o)
    assert float(out.alphas[0, 0, 0, 0]) == 0.0 and float(out.depths[0, 0, 0, 0]) == 0.0
    torch.testing.assert_close(out.colors[0, 0, 0], bg)


def test_depth_sorting_and_early_stop():
    """Four wide Gaussians over the centre pixel, given out of depth order. Alphas 0.99, 0.98, 0.9,
    0.5 front to back: T goes 1 -> 0.01 -> 2e-4; the third would take it to 2e-5 < 1e-4, so it is
    dropped and the pixel stops (the fourth is never added either)."""
    viewmats, Ks = _one_camera()
    means = torch.tensor([[0, 0, 4.0], [0, 0, 1.0], [0, 0, 3.0], [0, 0, 2.0]], dtype=F64)
    opac = torch.tensor([0.5, 0.99, 0.9, 0.98], dtype=F64)
    rgb = torch.tensor([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 1.0], [0, 1.0, 0]], dtype=F64)
    bg = torch.tensor([0.3, 0.3, 0.3], dtype=F64)
    out = rasterization(means, _unit_quats(4), torch.full((4, 3), 0.5, dtype=F64), opac, rgb,
                        viewmats, Ks, 11, 9, backgrounds=bg, backend="reference")
    t_final = 0.01 * 0.02
    expect = 0.99 * rgb[1] + 0.01 * 0.98 * rgb[3] + t_final * bg
    torch.testing.assert_close(out.colors[0, 4, 5], expect)
    torch.testing.assert_close(out.alphas[0, 4, 5, 0], torch.tensor(1 - t_final, dtype=F64))
    expect_depth = (0.99 * 1.0 + 0.01 * 0.98 * 2.0) / (1 - t_final)
    torch.testing.assert_close(out.depths[0, 4, 5, 0], torch.tensor(expect_depth, dtype=F64))


def test_alpha_clamp_skip_and_culling():
    viewmats, Ks = _one_camera()
    q, s = _unit_quats(1), torch.full((1, 3), 0.3, dtype=F64)
    rgb = torch.ones(1, 3, dtype=F64)

    def centre_alpha(mean, opacity):
        out = rasterization(torch.tensor([mean], dtype=F64), q, s, torch.tensor([opacity], dtype=F64),
                            rgb, viewmats, Ks, 11, 9, backend="reference")
        return float(out.alphas[0, 4, 5, 0])
    assert centre_alpha([0, 0, 2.0], 1.0) == pytest.approx(0.99)  # clamped to 0.99
    assert centre_alpha([0, 0, 2.0], 0.003) == 0.0  # below 1/255: skipped
    assert centre_alpha([0, 0, 2.0], 0.004) == pytest.approx(0.004)
    assert centre_alpha([0, 0, -2.0], 0.9) == 0.0  # behind the camera
    assert centre_alpha([0, 0, 0.005], 0.9) == 0.0  # in front of the near plane (0.01)


def test_empty_and_all_culled_give_background():
    viewmats, Ks = _one_camera()
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=F64, requires_grad=True)
    empty = [torch.zeros(0, 3, dtype=F64, requires_grad=True), torch.zeros(0, 4, dtype=F64),
             torch.zeros(0, 3, dtype=F64), torch.zeros(0, dtype=F64), torch.zeros(0, 3, dtype=F64)]
    out = rasterization(*empty, viewmats, Ks, 11, 9, backgrounds=bg, backend="reference")
    torch.testing.assert_close(out.colors, bg.detach().expand(1, 9, 11, 3))
    assert float(out.alphas.detach().abs().max()) == 0.0
    gm, gb = torch.autograd.grad(out.colors.sum(), [empty[0], bg])
    assert gm.shape == (0, 3) and torch.allclose(gb, torch.full((3,), 99.0, dtype=F64))
    behind = torch.tensor([[0.0, 0.0, -1.0]], dtype=F64, requires_grad=True)
    out = rasterization(behind, _unit_quats(1), torch.full((1, 3), 0.1, dtype=F64),
                        torch.tensor([0.9], dtype=F64), torch.ones(1, 3, dtype=F64), viewmats, Ks,
                        11, 9, backgrounds=bg, backend="reference")
    torch.testing.assert_close(out.colors, bg.detach().expand(1, 9, 11, 3))
    (g,) = torch.autograd.grad(out.colors.sum(), [behind])
    assert torch.equal(g, torch.zeros_like(g))


def test_render_applies_activations():
    m, q, s, o, sh, v, k = tiny_scene(n=5, c=2, seed=5)
    g = Gaussians(m, q * 3.0, torch.log(s), torch.logit(o), sh)
    cams = Cameras(v, k, 12, 10)
    a = render(g, cams, backend="reference")
    b = rasterization(m, q, s, o, sh, v, k, 12, 10, sh_degree=1, backend="reference")
    for x, y in zip((a.colors, a.alphas, a.depths), (b.colors, b.alphas, b.depths)):
        torch.testing.assert_close(x, y)
    with pytest.raises(ValueError, match="unbatched"):
        render(Gaussians.stack([g, g]), cams, backend="reference")


def test_per_camera_colors():
    m, q, s, o, _, v, k = tiny_scene(n=5, c=2, seed=6)
    rgb = torch.rand(2, 5, 3, dtype=F64)
    both = rasterization(m, q, s, o, rgb, v, k, 12, 10, backend="reference")
    second = rasterization(m, q, s, o, rgb[1], v[1:], k[1:], 12, 10, backend="reference")
    torch.testing.assert_close(both.colors[1:], second.colors)


def test_backends_listed():
    names = available_backends()
    assert names[0] == "reference" and set(names) <= {"reference", "cpu", "gsplat"}


@pytest.mark.parametrize("change, match", [
    (dict(means=torch.zeros(5, 2, dtype=F64)), "means"),
    (dict(quats=torch.zeros(4, 4, dtype=F64)), "quats"),
    (dict(quats=torch.zeros(5, 4, dtype=F64)), "zero quaternion"),
    (dict(scales=-torch.ones(5, 3, dtype=F64)), "scales"),
    (dict(opacities=torch.full((5,), 1.5, dtype=F64)), "opacities"),
    (dict(opacities=torch.full((5,), float("nan"), dtype=F64)), "opacities: contains 5 NaN"),
    (dict(means=torch.full((5, 3), float("inf"), dtype=F64)), "means: contains"),
    (dict(sh=torch.zeros(5, 3, 3, dtype=F64)), "colors"),
    (dict(viewmats=torch.zeros(2, 4, 4, dtype=F64)), "viewmats"),
    (dict(Ks=torch.eye(3, dtype=F64)[None]), "Ks"),
    (dict(Ks=torch.zeros(2, 3, 3, dtype=F64)), "focal"),
    (dict(width=0), "image size"),
    (dict(height=2.5), "integers"),
    (dict(backgrounds=torch.zeros(4, dtype=F64)), "backgrounds"),
    (dict(sh_degree=4), "sh_degree"),
    (dict(backend="vulkan"), "backend"),
    (dict(backend="gsplat"), "CUDA"),
    (dict(means=torch.zeros(5, 3, dtype=torch.float32)), "dtype"),
])
def test_input_errors(change, match):
    m, q, s, o, sh, v, k = tiny_scene(n=5, c=2)
    args = dict(means=m, quats=q, scales=s, opacities=o, sh=sh, viewmats=v, Ks=k, width=12, height=10,
                sh_degree=1, backgrounds=None, backend="reference")
    if "viewmats" in change and not change["viewmats"].any():
        change = dict(viewmats=torch.eye(4, dtype=F64).repeat(2, 1, 1))
        change["viewmats"][1, :3, :3] = 0.0  # singular rotation block
        match = "singular"
    args.update(change)
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        rasterization(args["means"], args["quats"], args["scales"], args["opacities"], args["sh"],
                      args["viewmats"], args["Ks"], args["width"], args["height"],
                      sh_degree=args["sh_degree"], backgrounds=args["backgrounds"], backend=args["backend"])


def test_auto_falls_back_to_reference_with_one_warning(monkeypatch):
    import warnings

    from foresplat.render import api, cpu

    monkeypatch.setattr(cpu, "_ext", None)
    monkeypatch.setattr(cpu, "_error", "native cpu kernel build failed: simulated")
    monkeypatch.setattr(api, "_warned_fallback", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert api.resolve_backend("auto", torch.device("cpu")) == "reference"
        assert api.resolve_backend("auto", torch.device("cpu")) == "reference"
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and "simulated" in msgs[0] and "\n" not in msgs[0]
    with pytest.raises(RuntimeError, match="simulated"):
        cpu.load_extension()
