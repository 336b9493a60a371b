"""Core types: Gaussians, Cameras, Scene and view splits (validation, conventions, round trips)."""

import math

import pytest
import torch

from foresplat import Cameras, Gaussians
from foresplat.cameras import c2w_opengl_to_viewmat, look_at
from foresplat.data import Scene, split_views
from foresplat.gaussians import rgb_to_sh_dc, sh_dc_to_rgb


def random_gaussians(n=7, degree=1, batch=(), seed=0):
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return Gaussians(torch.randn(*batch, n, 3, generator=g), torch.randn(*batch, n, 4, generator=g),
                     torch.randn(*batch, n, 3, generator=g), torch.randn(*batch, n, generator=g),
                     torch.randn(*batch, n, k, 3, generator=g))


def orbit_scene(v=8, w=40, h=30):
    ang = torch.linspace(0, 2 * math.pi, v + 1)[:-1]
    eye = torch.stack([3 * torch.cos(ang), torch.full_like(ang, -1.0), 3 * torch.sin(ang)], -1)
    view = look_at(eye, torch.zeros(v, 3), torch.tensor([0.0, -1.0, 0.0]))
    K = torch.tensor([[40.0, 0, w / 2], [0, 40.0, h / 2], [0, 0, 1]]).expand(v, 3, 3).clone()
    return Scene(torch.rand(v, h, w, 3), Cameras(view, K, w, h), name="orbit", depths=torch.rand(v, h, w) + 1)


def test_gaussians_activations_and_properties():
    g = random_gaussians(5, degree=2, batch=(3,))
    assert g.num == 5 and g.batch_shape == (3,) and g.sh_degree == 2
    assert torch.allclose(g.scales(), g.log_scales.exp())
    assert torch.allclose(g.opacities(), torch.sigmoid(g.opacity_logits))
    assert torch.allclose(g.unit_quats().norm(dim=-1), torch.ones(3, 5))
    assert g[1].batch_shape == () and torch.equal(g[1].means, g.means[1])


def test_gaussians_from_activated_round_trip():
    means, quats = torch.randn(4, 3), torch.randn(4, 4)
    scales, opac, rgb = torch.rand(4, 3) + 0.1, torch.rand(4) * 0.9 + 0.05, torch.rand(4, 3)
    g = Gaussians.from_activated(means, quats, scales, opac, rgb, sh_degree=3)
    assert g.sh.shape == (4, 16, 3) and torch.all(g.sh[:, 1:] == 0)
    assert torch.allclose(g.scales(), scales, atol=1e-6)
    assert torch.allclose(g.opacities(), opac, atol=1e-6)
    assert torch.allclose(sh_dc_to_rgb(g.sh[:, 0]), rgb, atol=1e-6)
    assert torch.allclose(sh_dc_to_rgb(rgb_to_sh_dc(rgb)), rgb)


def test_gaussians_cat_stack_select():
    a, b = random_gaussians(3, seed=1), random_gaussians(4, seed=2)
    c = Gaussians.cat([a, b])
    assert c.num == 7 and torch.equal(c.sh[3:], b.sh) and torch.equal(c.opacity_logits[:3], a.opacity_logits)
    s = Gaussians.stack([a, a])
    assert s.batch_shape == (2,) and torch.equal(s[0].quats, a.quats)
    assert c.select(torch.tensor([0, 6])).num == 2


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("means", torch.randn(7, 2), "means: expected shape"),
        ("quats", torch.zeros(7, 4), "zero quaternion"),
        ("log_scales", torch.full((7, 3), float("nan")), "log_scales: contains 21 NaN"),
        ("opacity_logits", torch.randn(6), "leading shape"),
        ("sh", torch.randn(7, 5, 3), "coefficients"),
        ("means", torch.zeros(7, 3, dtype=torch.long), "floating-point"),
    ],
)
def test_gaussians_validation_names_the_field(field, value, match):
    g = random_gaussians().replace(**{field: value})
    with pytest.raises((ValueError, TypeError), match=match):
        g.validate()


def test_look_at_and_projection_conventions():
    eye = torch.tensor([[0.0, 0.0, -4.0]])
    view = look_at(eye, torch.zeros(1, 3), torch.tensor([0.0, -1.0, 0.0]))
    cams = Cameras(view, torch.tensor([[[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]]), 64, 48).validate()
    assert torch.allclose(cams.centers(), eye, atol=1e-6)
    uv, z = cams.project(torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
    assert torch.allclose(uv[0, 0], torch.tensor([32.0, 24.0])) and torch.allclose(z[0], torch.full((3,), 4.0))
    assert uv[0, 1, 0] > 32  # +x world is right in the image (camera x right)
    assert uv[0, 2, 1] < 24  # world up (-y here) is up in the image (camera y down)
    assert torch.allclose(cams.camtoworlds()[0, :3, 3], eye[0], atol=1e-6)


def test_opengl_c2w_conversion():
    # An OpenGL camera at z=+4 looking down -z (towards the origin) is OpenCV-looking down +z_cam at it.
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[2, 3] = 4.0
    view = c2w_opengl_to_viewmat(c2w)
    p_cam = view @ torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    assert torch.allclose(p_cam[:3], torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64))
    up_cam = view @ torch.tensor([0.0, 1.0, 4.0, 1.0], dtype=torch.float64)  # world +y is image up
    assert up_cam[1] < 0


def test_camera_validation_errors():
    good = orbit_scene().cameras
    with pytest.raises(ValueError, match="image size"):
        Cameras(good.viewmats, good.Ks, 0, 30).validate()
    bad = good.viewmats.clone()
    bad[0, :3, :3] = 0
    with pytest.raises(ValueError, match="singular"):
        Cameras(bad, good.Ks, 40, 30).validate()
    mirrored = good.viewmats.clone()
    mirrored[1, 0, :3] *= -1
    with pytest.raises(ValueError, match="reflection"):
        Cameras(mirrored, good.Ks, 40, 30).validate()
    with pytest.raises(ValueError, match="disagree"):
        Cameras(good.viewmats, good.Ks[:3], 40, 30).validate()
    nan_k = good.Ks.clone()
    nan_k[2, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="Ks: contains 1 NaN/inf"):
        Cameras(good.viewmats, nan_k, 40, 30).validate()


def test_resize_and_crop_keep_projection_consistent():
    scene = orbit_scene().validate()
    pts = torch.randn(20, 3) * 0.5
    uv, _ = scene.cameras.project(pts)
    half = scene.resized(20, 15).validate()
    uv_half, _ = half.cameras.project(pts)
    assert torch.allclose(uv_half, uv * 0.5, atol=1e-4)  # pixel-centre convention: scale, no shift
    crop = scene.center_cropped(30, 20).validate()
    uv_crop, _ = crop.cameras.project(pts)
    assert torch.allclose(uv_crop, uv - torch.tensor([5.0, 5.0]), atol=1e-4)
    assert torch.equal(crop.images, scene.images[:, 5:25, 5:35])


def test_scene_validation_and_extent():
    scene = orbit_scene()
    assert scene.extent() == pytest.approx(1.1 * math.sqrt(9.0), rel=1e-5)
    with pytest.raises(ValueError, match="8 images but 3 cameras"):
        Scene(scene.images, scene.cameras.index([0, 1, 2]), name="x").validate()
    with pytest.raises(ValueError, match="near"):
        Scene(scene.images, scene.cameras, near=2.0, far=1.0).validate()


@pytest.mark.parametrize("rule", ["random", "even", "first"])
def test_split_views_is_deterministic_and_disjoint(rule):
    scene = orbit_scene(v=20)
    a = split_views(scene, 6, 3, rule=rule, seed=4)
    b = split_views(scene, 6, 3, rule=rule, seed=4)
    assert a.context_indices == b.context_indices and a.target_indices == b.target_indices
    assert len(a.context_indices) == 6 and len(a.target_indices) == 3
    assert not set(a.context_indices) & set(a.target_indices)
    assert torch.equal(a.context.images, scene.images[a.context_indices])
    with pytest.raises(ValueError, match="20 views"):
        split_views(scene, 18, 3, rule=rule)


def test_subset_keeps_only_points_of_kept_views():
    scene = orbit_scene(v=6)
    scene.points = torch.arange(18.0).reshape(6, 3)
    scene.point_colors = torch.rand(6, 3)
    scene.point_views = torch.tensor([0, 0, 2, 3, 5, 5])
    scene.validate()
    sub = scene.subset([5, 2]).validate()
    assert torch.equal(sub.points, scene.points[[2, 4, 5]])
    assert torch.equal(sub.point_views, torch.tensor([1, 0, 0]))  # renumbered to the subset's order
    assert torch.equal(sub.point_colors, scene.point_colors[[2, 4, 5]])
    split = split_views(scene, 4, 2, seed=1)
    assert set(split.context.point_views.tolist()) <= set(range(4))
    scene.point_views = torch.tensor([0, 0, 2, 3, 5, 6])
    with pytest.raises(ValueError, match="point_views"):
        scene.validate()
    scene.point_views = None
    assert scene.subset([1]).points.shape == (6, 3)  # unknown provenance: every point kept
