"""The native `cpu` backend against the dense reference: images AND gradients of every input on many
random scenes (overlaps, Gaussians behind the camera or outside the image, very thin and very large
ones, near-plane cases, several cameras, non-square images that do not fill whole 16x16 tiles, SH
degrees 0-3, RGB and per-camera colours, backgrounds), determinism, and edge cases.

Tolerances: in float64 both backends compute the same sums in a different order (the cpu kernel
recovers transmittance by division in its backward pass), so images agree to ~1e-14 and gradients
to ~1e-12 relative; we assert rtol 1e-7 / atol 1e-9. In float32, agreement is ~1e-6 on images and
~1e-5 relative on gradients; a pixel whose transmittance lands within float rounding of the 1e-4
stop (or an alpha within rounding of 1/255) may legitimately flip between the two, so float32 is
checked with norm-based criteria (at most 0.2% of pixels off by more than 1e-4, relative gradient
error below 1e-3).
"""

from __future__ import annotations

import pytest
import torch

from foresplat import Cameras, Gaussians
from foresplat.cameras import look_at
from foresplat.render import rasterization, render
from foresplat.render.api import resolve_backend

F64 = torch.float64
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")  # no silent fallback to reference


def random_scene(seed: int, n: int = 60, c: int = 2, width: int = 37, height: int = 23, k: int = 16,
                 dtype=F64):
    """Gaussians around the origin seen by C cameras ~3 units away, with a mix of hard cases."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.rand(*s, generator=g, dtype=dtype)  # noqa: E731
    means = (rnd(n, 3) - 0.5) * 2.0
    scales = torch.exp(torch.randn(n, 3, generator=g, dtype=dtype) * 0.7 - 2.3)
    opacities = rnd(n) * 0.98 + 0.01
    m = n // 8
    scales[:m, 0] = 1e-4  # very thin
    scales[m:2 * m] = 2.5 + rnd(m, 3)  # very large
    opacities[m:2 * m] *= 0.3
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    sh = torch.randn(n, k, 3, generator=g, dtype=dtype) * 0.5
    angles = rnd(c) * 1.2 - 0.6
    eyes = torch.stack([3.0 * torch.sin(angles), rnd(c) - 0.5, -3.0 * torch.cos(angles)], -1)
    viewmats = look_at(eyes, torch.zeros(c, 3, dtype=dtype), torch.tensor([0.0, -1.0, 0.0], dtype=dtype))
    f = 0.8 * width
    Ks = torch.tensor([[f, 0, width / 2], [0, f * 1.1, height / 2], [0, 0, 1]], dtype=dtype).repeat(c, 1, 1)
    Ks[:, 0, 2] += rnd(c) * 3 - 1.5
    # a few Gaussians behind the first camera, just past its near plane, and far outside its view
    cam2world = torch.linalg.inv(viewmats[0])
    local = torch.tensor([[0.1, 0.0, -1.0], [0.0, 0.05, 0.03], [0.01, 0.0, 0.02], [30.0, 0.0, 2.0],
                          [0.0, -25.0, 3.0]], dtype=dtype)
    means[2 * m:2 * m + 5] = local @ cam2world[:3, :3].T + cam2world[:3, 3]
    backgrounds = rnd(c, 3)
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, sh=sh, viewmats=viewmats,
                Ks=Ks, width=width, height=height, backgrounds=backgrounds)


GRAD_NAMES = ("means", "quats", "scales", "opacities", "sh", "viewmats", "backgrounds")


def run(scene: dict, backend: str, sh_degree: int | None = 3, grads=GRAD_NAMES, colors=None,
        with_bg: bool = True):
    """Renders and differentiates a weighted sum of colours, alphas and depths w.r.t. `grads`."""
    if not with_bg:
        grads = tuple(g for g in grads if g != "backgrounds")
    leaves = {name: scene[name].clone().requires_grad_(name in grads)
              for name in ("means", "quats", "scales", "opacities", "sh", "viewmats", "Ks", "backgrounds")}
    col = leaves["sh"] if colors is None else colors.clone().requires_grad_("sh" in grads)
    out = rasterization(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"], col,
                        leaves["viewmats"], leaves["Ks"], scene["width"], scene["height"],
                        sh_degree=sh_degree, backgrounds=leaves["backgrounds"] if with_bg else None,
                        backend=backend)
    g = torch.Generator().manual_seed(123)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device)).sum()
               for t in (out.colors, out.alphas, out.depths))
    targets = [col if name == "sh" else leaves[name] for name in grads]
    grad_values = torch.autograd.grad(loss, targets)
    return out, dict(zip(grads, grad_values))


def assert_match64(a, b):
    out_a, g_a = a
    out_b, g_b = b
    for x, y in zip((out_a.colors, out_a.alphas, out_a.depths), (out_b.colors, out_b.alphas, out_b.depths)):
        torch.testing.assert_close(x, y, rtol=1e-7, atol=1e-9)
    for name in g_a:
        torch.testing.assert_close(g_a[name], g_b[name], rtol=1e-7, atol=1e-9, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("seed", range(12))
def test_matches_reference_float64(seed):
    scene = random_scene(seed, c=1 + seed % 3, width=[37, 16, 50][seed % 3], height=[23, 41, 33][seed % 3])
    degree = seed % 4
    scene["sh"] = scene["sh"][:, : (degree + 1) ** 2]
    ref = run(scene, "reference", sh_degree=degree)
    cpu = run(scene, "cpu", sh_degree=degree)
    assert float(ref[0].alphas.detach().max()) > 0.5  # the scene is actually visible
    assert all(float(g.abs().max()) > 0 for g in ref[1].values())  # every gradient is exercised
    assert_match64(ref, cpu)


@pytest.mark.parametrize("seed", [0, 1])
def test_rgb_and_per_camera_colors(seed):
    scene = random_scene(seed + 50, c=2)
    rgb = torch.rand(scene["means"].shape[0], 3, dtype=F64)
    assert_match64(run(scene, "reference", None, colors=rgb), run(scene, "cpu", None, colors=rgb))
    per_cam = torch.rand(2, scene["means"].shape[0], 3, dtype=F64)
    assert_match64(run(scene, "reference", None, colors=per_cam, with_bg=False),
                   run(scene, "cpu", None, colors=per_cam, with_bg=False))


def test_intrinsics_gradient_path():
    """Ks requiring grad: PyTorch projection (autograd) + native raster pass."""
    scene = random_scene(7)
    grads = GRAD_NAMES + ("Ks",)
    assert_match64(run(scene, "reference", grads=grads), run(scene, "cpu", grads=grads))


def test_dense_overlap_and_early_stop():
    """Hundreds of opaque Gaussians stacked in depth: most pixels hit the 1e-4 transmittance stop."""
    g = torch.Generator().manual_seed(3)
    n = 300
    means = torch.randn(n, 3, generator=g, dtype=F64) * torch.tensor([0.4, 0.3, 0.5], dtype=F64)
    means[:, 2] += 3.0
    scene = dict(means=means, quats=torch.randn(n, 4, generator=g, dtype=F64),
                 scales=torch.full((n, 3), 0.15, dtype=F64), opacities=torch.full((n,), 0.95, dtype=F64),
                 sh=torch.randn(n, 4, 3, generator=g, dtype=F64), viewmats=torch.eye(4, dtype=F64)[None],
                 Ks=torch.tensor([[[30.0, 0, 20], [0, 30.0, 17], [0, 0, 1]]], dtype=F64), width=40,
                 height=34, backgrounds=torch.rand(1, 3, generator=g, dtype=F64))
    ref = run(scene, "reference", sh_degree=1)
    assert float((1 - ref[0].alphas.detach()).min()) < 1e-3  # early stop exercised
    assert_match64(ref, run(scene, "cpu", sh_degree=1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_float32(seed):
    scene = {k: (v.float() if torch.is_tensor(v) else v) for k, v in random_scene(seed + 100, n=120).items()}
    (ref_out, ref_g), (cpu_out, cpu_g) = run(scene, "reference"), run(scene, "cpu")
    for x, y in zip((ref_out.colors, ref_out.alphas), (cpu_out.colors, cpu_out.alphas)):
        diff = (x - y).detach().abs()
        assert float((diff > 1e-4).float().mean()) <= 2e-3 and float(diff.max()) < 0.05
    for name in ref_g:
        rel = float((ref_g[name] - cpu_g[name]).norm() / ref_g[name].norm().clamp_min(1e-12))
        assert rel < 1e-3, f"{name}: relative gradient error {rel:.2e}"


def test_deterministic_and_thread_independent():
    scene = random_scene(11, n=200, c=2, width=70, height=45, dtype=torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = run(scene, "cpu")
        b = run(scene, "cpu")
        torch.set_num_threads(2)
        c = run(scene, "cpu")
    finally:
        torch.set_num_threads(threads)
    for other in (b, c):
        assert torch.equal(a[0].colors, other[0].colors) and torch.equal(a[0].depths, other[0].depths)
        for name in a[1]:
            assert torch.equal(a[1][name], other[1][name]), name


def test_double_backward_raises():
    scene = random_scene(1, n=20)
    means = scene["means"].clone().requires_grad_()
    out = rasterization(means, scene["quats"], scene["scales"], scene["opacities"], scene["sh"],
                        scene["viewmats"], scene["Ks"], 37, 23, sh_degree=3, backend="cpu")
    (g,) = torch.autograd.grad(out.colors.sum(), means, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), means)


def test_empty_culled_and_auto():
    scene = random_scene(2, n=10)
    bg = scene["backgrounds"]
    empty = rasterization(torch.zeros(0, 3, dtype=F64), torch.zeros(0, 4, dtype=F64),
                          torch.zeros(0, 3, dtype=F64), torch.zeros(0, dtype=F64), torch.zeros(0, 3, dtype=F64),
                          scene["viewmats"], scene["Ks"], 37, 23, backgrounds=bg, backend="cpu")
    torch.testing.assert_close(empty.colors, bg[:, None, None, :].expand(2, 23, 37, 3))
    means = (torch.linalg.inv(scene["viewmats"][0])[:3, 3] * 1.5).expand(10, 3).clone().requires_grad_()
    culled = rasterization(means, scene["quats"], scene["scales"], scene["opacities"], scene["sh"],
                           scene["viewmats"][:1], scene["Ks"][:1], 37, 23, sh_degree=3, backgrounds=bg[0],
                           backend="cpu")  # all Gaussians behind the camera
    torch.testing.assert_close(culled.colors, bg[0].expand(1, 23, 37, 3))
    (g,) = torch.autograd.grad(culled.colors.sum(), means)
    assert torch.equal(g, torch.zeros_like(g))
    assert resolve_backend("auto", torch.device("cpu")) == "cpu"


def test_render_gaussians_cameras():
    scene = random_scene(4, n=50)
    gs = Gaussians(scene["means"], scene["quats"], torch.log(scene["scales"]), torch.logit(scene["opacities"]),
                   scene["sh"])
    cams = Cameras(scene["viewmats"], scene["Ks"], 37, 23)
    a, b = render(gs, cams, backend="cpu"), render(gs, cams, backend="reference")
    torch.testing.assert_close(a.colors, b.colors, rtol=1e-7, atol=1e-9)


@pytest.mark.gpu
def test_gsplat_matches_reference():
    """gsplat on CUDA vs our reference (float32). gsplat clamps alpha at 0.999 instead of 0.99, so the
    scene keeps opacities below 0.99 to compare like with like."""
    scene = {k: (v.float() if torch.is_tensor(v) else v) for k, v in random_scene(5, n=100).items()}
    scene["opacities"] = scene["opacities"].clamp_max(0.9)
    grads = ("means", "scales", "opacities", "sh")
    (ref_out, ref_g) = run(scene, "reference", grads=grads)
    cuda = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in scene.items()}
    (gs_out, gs_g) = run(cuda, "gsplat", grads=grads)
    for x, y in zip((ref_out.colors, ref_out.alphas, ref_out.depths), (gs_out.colors, gs_out.alphas, gs_out.depths)):
        diff = (x - y.cpu()).detach().abs()
        assert float((diff > 1e-3).float().mean()) <= 5e-3
    for name in grads:
        rel = float((ref_g[name] - gs_g[name].cpu()).norm() / ref_g[name].norm().clamp_min(1e-12))
        assert rel < 2e-2, f"{name}: relative gradient error {rel:.2e}"
