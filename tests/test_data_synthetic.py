"""Tests for the procedural synthetic scene generator (foresplat.data.synthetic and helpers)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from foresplat.data.scene import Scene
from foresplat.data.synthetic import (EVAL_SEED_START, TRAIN_SEED_START, SyntheticConfig, SyntheticStream,
                                      edge_pixels, generate_scene, sample_layout, synthetic_scenes)
from foresplat.data.synthetic_geometry import (intersect_box, intersect_cylinder, intersect_dome,
                                               intersect_plane, intersect_sphere, local_normal)
from foresplat.data.synthetic_render import pixel_rays, shade, trace
from foresplat.data.synthetic_textures import TEXTURE_KINDS, hsv_to_rgb, sample_texture

SMALL = SyntheticConfig(width=40, height=32, num_views=8, points_per_view=64)


def _fields(scene: Scene):
    return (scene.images, scene.depths, scene.masks, scene.points, scene.point_colors,
            scene.cameras.viewmats, scene.cameras.Ks)


# ---------------------------------------------------------------- determinism, shapes, ranges

def test_deterministic_per_seed_and_seeds_differ():
    a, b = generate_scene(11, SMALL), generate_scene(11, SMALL)
    for x, y in zip(_fields(a), _fields(b)):
        assert torch.equal(x, y)
    assert (a.near, a.far, a.name) == (b.near, b.far, b.name) == (a.near, a.far, "synthetic-11")
    c = generate_scene(12, SMALL)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.cameras.viewmats, c.cameras.viewmats)


@pytest.mark.parametrize("rig", ["orbit", "forward"])
@pytest.mark.parametrize("background", ["sky", "walls", "backdrop"])
def test_shapes_ranges_and_finite_depth(rig, background):
    cfg = replace(SMALL, rig=rig, background=background)
    for seed in (1, 2):
        s = generate_scene(seed, cfg)
        assert s.validate() is s
        V, H, W = cfg.num_views, cfg.height, cfg.width
        assert s.images.shape == (V, H, W, 3) and s.images.dtype == torch.float32
        assert s.depths.shape == (V, H, W) and s.masks.shape == (V, H, W)
        assert float(s.images.min()) >= 0.0 and float(s.images.max()) <= 1.0
        assert bool(torch.isfinite(s.depths).all()) and float(s.depths.min()) > 0.0
        assert s.near <= float(s.depths.min()) and s.far >= float(s.depths.max())
        assert set(s.masks.unique().tolist()) <= {0.0, 1.0}
        assert s.points.shape == (V * cfg.points_per_view, 3) == s.point_colors.shape
        assert float(s.point_colors.min()) >= 0 and float(s.point_colors.max()) <= 1
        K = s.cameras.Ks
        assert torch.allclose(K[:, 0, 2], torch.full((V,), W / 2)) and torch.allclose(K[:, 1, 2], torch.full((V,), H / 2))
        assert s.images.std() > 0.02, "degenerate (flat) images"


def test_scenes_are_varied():
    layouts = [sample_layout(s, SyntheticConfig()) for s in range(40)]
    assert {lay.rig for lay in layouts} == {"orbit", "forward"}
    assert {lay.background for lay in layouts} == {"sky", "walls", "backdrop"}
    kinds = {o.kind for lay in layouts for o in lay.objects}
    assert kinds == {"sphere", "box", "cylinder"}
    textures = {o.texture.kind for lay in layouts for o in lay.objects}
    assert textures == set(TEXTURE_KINDS)
    counts = {len(lay.objects) for lay in layouts}
    assert len(counts) >= 3
    mean_colors = torch.stack([generate_scene(s, SMALL).images.mean((0, 1, 2)) for s in range(6)])
    assert float(mean_colors.std(0).max()) > 0.03, "scenes all have the same colours"


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="width"):
        generate_scene(0, SyntheticConfig(width=0))
    with pytest.raises(ValueError, match="rig"):
        SyntheticConfig(rig="circle").validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="camera_distance"):
        SyntheticConfig(camera_distance=(4.0, 2.0)).validate()
    with pytest.raises(ValueError, match="textures"):
        SyntheticConfig(textures=("plaid",)).validate()
    with pytest.raises(ValueError, match="elevation_deg"):
        SyntheticConfig(elevation_deg=(-30.0, 10.0)).validate()


# ---------------------------------------------------------------- geometry of the ground truth

def test_points_project_onto_their_pixels_with_their_depth():
    s = generate_scene(5, SMALL)
    V, P = SMALL.num_views, SMALL.points_per_view
    for v in range(V):
        pts = s.points[v * P:(v + 1) * P]
        uv, z = s.cameras.index(v).project(pts)
        uv, z = uv[0], z[0]
        # back-projected from pixel centres: they land on (u + 0.5, v + 0.5) of their own view
        frac = uv - torch.floor(uv)
        assert torch.allclose(frac, torch.full_like(frac, 0.5), atol=2e-3)
        assert bool(((uv >= 0) & (uv[:, :1] < SMALL.width) & (uv[:, 1:] < SMALL.height)).all())
        u, w = uv[:, 0].long(), uv[:, 1].long()
        assert torch.allclose(z, s.depths[v, w, u], rtol=1e-4)
        assert torch.allclose(s.point_colors[v * P:(v + 1) * P], s.images[v, w, u])


def _backproject(scene: Scene, v: int):
    """World points [H*W, 3] of view v's pixel centres from its depth map."""
    H, W = scene.height, scene.width
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    view = torch.full((H * W,), v, dtype=torch.long)
    o, d = pixel_rays(scene.cameras.viewmats, scene.cameras.Ks, view,
                      xx.reshape(-1).float() + 0.5, yy.reshape(-1).float() + 0.5)
    return o + scene.depths[v].reshape(-1, 1) * d


@pytest.mark.parametrize("rig", ["orbit", "forward"])
def test_multiview_depth_and_colour_consistency(rig):
    """Back-project view i, project into view j, z-test against j's depth (nearest pixel): where
    visible the depths match and (Lambertian) colours agree; a wrong depth convention (ray length
    instead of z) or a view-dependent shading would break it."""
    cfg = replace(SMALL, rig=rig, supersample=1, width=48, height=48)
    for seed in (3, 4):
        s = generate_scene(seed, cfg)
        for i, j in ((0, 1), (2, 3), (5, 4)):
            X = _backproject(s, i)
            uv, z = s.cameras.index(j).project(X)
            uv, z = uv[0], z[0]
            inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cfg.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cfg.height)
            assert int(inside.sum()) > 0.3 * X.shape[0], "neighbouring views barely overlap"
            u = uv[inside, 0].long()
            w = uv[inside, 1].long()
            zj = s.depths[j, w, u]
            visible = (z[inside] - zj).abs() < 0.01 * zj
            assert float(visible.float().mean()) > 0.4
            col_i = s.images[i].reshape(-1, 3)[inside][visible]
            col_j = s.images[j, w, u][visible]
            assert float((col_i - col_j).abs().mean()) < 0.06


def test_exact_cross_view_consistency_with_the_tracer():
    """A ray from camera j toward a surface point X seen by view i never passes X unhit, hits X
    itself for most points, and shades it with exactly the colour view i saw (no anti-aliasing)."""
    cfg = replace(SMALL, supersample=1)
    seed = 8
    s = generate_scene(seed, cfg)
    layout = sample_layout(seed, cfg)
    X = _backproject(s, 0)  # [N, 3]
    for j in (1, 3):
        c = s.cameras.index(j).centers()[0]
        R = s.cameras.viewmats[j, :3, :3]
        zj = ((X - c) @ R.T)[:, 2]
        front = zj > 1e-3
        d = (X[front] - c) / zj[front].unsqueeze(-1)  # camera-z = 1, so t = z-depth of X
        o = c.expand_as(d)
        t, _ = trace(layout, o, d)
        assert bool((t <= zj[front] * (1 + 1e-4) + 1e-4).all()), "a ray passed through a visible surface"
        hit = (t - zj[front]).abs() < 1e-3 * zj[front]
        assert float(hit.float().mean()) > 0.5
        res = shade(layout, o[hit], d[hit])
        col_i = s.images[0].reshape(-1, 3)[front][hit]
        agree = ((res.rgb - col_i).abs().amax(-1) < 1e-3).float().mean()
        assert float(agree) > 0.97  # the rest: texture/shadow boundaries crossed by rounding


def test_masks_mark_primitive_hits():
    cfg = replace(SMALL, supersample=1)
    s = generate_scene(6, cfg)
    layout = sample_layout(6, cfg)
    assert float(s.masks.mean()) > 0.01
    for v in range(2):
        X = _backproject(s, v)
        m = s.masks[v].reshape(-1) > 0.5
        dist = torch.stack([(X - o.center).norm(dim=-1) / o.bound_radius for o in layout.objects]).amin(0)
        assert bool((dist[m] <= 1.0 + 1e-3).all())  # foreground points lie on a primitive
        bg = X[~m]  # background points lie on a plane (ground, walls) or on the sky dome
        off = [((bg - pl.point) @ pl.normal).abs() for pl in layout.planes]
        off.append(((bg - layout.sky.center).norm(dim=-1) - layout.sky.radius).abs())
        scale = s.depths[v].reshape(-1)[~m]
        assert bool((torch.stack(off).amin(0) < 1e-4 * scale + 1e-4).all())


# ---------------------------------------------------------------- rigs

def _axes(viewmats: torch.Tensor) -> torch.Tensor:
    return viewmats[:, 2, :3]  # optical axis (camera z) in world coordinates, [V, 3]


def test_orbit_cameras_look_at_the_scene_centre():
    for jitter in (0.0, 0.05):
        cfg = replace(SMALL, rig="orbit", target_jitter=jitter)
        for seed in range(3):
            layout = sample_layout(seed, cfg)
            s = generate_scene(seed, cfg)
            assert torch.equal(s.cameras.viewmats, layout.viewmats)
            c = s.cameras.centers()
            to_centre = layout.center - c
            along = (to_centre * _axes(s.cameras.viewmats)).sum(-1, keepdim=True)
            miss = (to_centre - along * _axes(s.cameras.viewmats)).norm(dim=-1)
            assert bool((along > 0).all())
            assert float(miss.max()) <= jitter * math.sqrt(3) + 1e-4
            dist = to_centre.norm(dim=-1) / layout.info["content_radius"]
            lo, hi = cfg.camera_distance
            assert float(dist.min()) > 0.9 * lo and float(dist.max()) < 1.1 * hi
            assert bool((c[:, 2] > 0).all()), "a camera below the ground"


def test_forward_rig_cameras_are_roughly_parallel():
    cfg = replace(SMALL, rig="forward")
    for seed in range(4):
        s = generate_scene(seed, cfg)
        a = _axes(s.cameras.viewmats)
        cos = (a @ a.T).clamp(-1, 1)
        assert math.degrees(float(torch.acos(cos.min()))) < 15.0
        c = s.cameras.centers()
        spread = (c - c.mean(0)).norm(dim=-1).max()
        layout = sample_layout(seed, cfg)
        assert float(spread) < 0.5 * float((c.mean(0) - layout.center).norm())
        assert float((a.mean(0) * (layout.center - c.mean(0))).sum()) > 0, "rig faces away from the scene"


# ---------------------------------------------------------------- streams and seed ranges

def test_streams_and_seed_ranges():
    assert TRAIN_SEED_START == 0 and EVAL_SEED_START == 1_000_000
    cfg = replace(SMALL, num_views=2, width=16, height=16)
    names = [s.name for s in synthetic_scenes(5, 2, cfg)]
    assert names == ["synthetic-5", "synthetic-6"]
    stream = SyntheticStream(cfg, seed_offset=EVAL_SEED_START, length=2)
    assert len(stream) == 2
    assert [s.name for s in stream] == [f"synthetic-{EVAL_SEED_START}", f"synthetic-{EVAL_SEED_START + 1}"]
    assert torch.equal(stream[1].images, generate_scene(EVAL_SEED_START + 1, cfg).images)
    with pytest.raises(IndexError):
        stream[2]
    with pytest.raises(TypeError):
        len(SyntheticStream(cfg))


# ---------------------------------------------------------------- anti-aliasing

def test_antialiasing_only_touches_edge_pixels():
    base = replace(SMALL, supersample=1)
    a = generate_scene(9, base)
    b = generate_scene(9, replace(base, supersample=3))
    assert torch.equal(a.depths, b.depths) and torch.equal(a.masks, b.masks)
    changed = (a.images != b.images).any(-1)
    assert bool(changed.any())
    layout = sample_layout(9, base)
    surf = trace(layout, *pixel_rays(layout.viewmats, layout.Ks,
                                     *[t.reshape(-1) for t in _grid(base)]))[1]
    edges = edge_pixels(a.images, surf.view(a.depths.shape), base.antialias_threshold)
    assert not bool((changed & ~edges).any())


def _grid(cfg):
    V, H, W = cfg.num_views, cfg.height, cfg.width
    v, y, x = torch.meshgrid(torch.arange(V), torch.arange(H), torch.arange(W), indexing="ij")
    return v, x.float() + 0.5, y.float() + 0.5


def test_edge_pixels():
    img = torch.zeros(1, 4, 4, 3)
    surf = torch.zeros(1, 4, 4, dtype=torch.long)
    surf[0, :, 2:] = 1
    e = edge_pixels(img, surf, 0.1)
    assert e[0, :, 1:3].all() and not e[0, :, 0].any() and not e[0, :, 3].any()
    img[0, 0, 0] = 1.0
    assert edge_pixels(img, torch.zeros_like(surf), 0.1)[0, 0, :2].all()


# ---------------------------------------------------------------- primitives and textures

def _ray(o, d):
    return torch.tensor(o, dtype=torch.float32).view(3, 1), torch.tensor(d, dtype=torch.float32).view(3, 1)


def test_intersections_analytic():
    assert float(intersect_sphere(*_ray([5, 0, 0], [-1, 0, 0]), 1.0)) == pytest.approx(4.0)
    assert float(intersect_sphere(*_ray([5, 0, 0], [-2, 0, 0]), 1.0)) == pytest.approx(2.0)
    assert math.isinf(float(intersect_sphere(*_ray([5, 3, 0], [-1, 0, 0]), 1.0)))
    assert math.isinf(float(intersect_sphere(*_ray([5, 0, 0], [1, 0, 0]), 1.0)))  # behind
    assert float(intersect_sphere(*_ray([0, 0, 0], [0, 1, 0]), 1.0)) == pytest.approx(1.0)  # inside
    h = torch.tensor([1.0, 2.0, 3.0])
    assert float(intersect_box(*_ray([0, 5, 0], [0, -1, 0]), h)) == pytest.approx(3.0)
    assert float(intersect_box(*_ray([0, 0, -7], [0, 0, 1]), h)) == pytest.approx(4.0)
    assert math.isinf(float(intersect_box(*_ray([2, 5, 0], [0, -1, 0]), h)))
    assert float(intersect_cylinder(*_ray([4, 0, 0], [-1, 0, 0]), 1.0, 2.0)) == pytest.approx(3.0)
    assert float(intersect_cylinder(*_ray([0.5, 0, 9], [0, 0, -1]), 1.0, 2.0)) == pytest.approx(7.0)  # cap
    assert math.isinf(float(intersect_cylinder(*_ray([4, 0, 2.5], [-1, 0, 0]), 1.0, 2.0)))  # above
    n = torch.tensor([0.0, 0.0, 1.0])
    assert float(intersect_plane(*_ray([1, 2, 3], [0, 0, -1]), torch.zeros(3), n)) == pytest.approx(3.0)
    assert math.isinf(float(intersect_plane(*_ray([1, 2, 3], [0, 0, 1]), torch.zeros(3), n)))
    wall = torch.tensor([1.0, 0.0, 0.0])
    assert math.isinf(float(intersect_plane(*_ray([0, 0, 5], [1, 0, 0]), torch.tensor([3.0, 0, 0]), wall, 4.0)))
    assert float(intersect_dome(*_ray([1, 0, 0], [1, 0, 0]), torch.zeros(3), 10.0)) == pytest.approx(9.0)


def test_random_hits_lie_on_the_surfaces():
    g = torch.Generator().manual_seed(0)
    o = torch.randn(3, 4000, generator=g) * 3.0
    d = -o + torch.randn(3, 4000, generator=g)  # roughly toward the primitive
    o[:, :100] *= 0.1  # some rays start inside
    h = torch.tensor([0.5, 0.8, 1.1])
    for kind, t in (("sphere", intersect_sphere(o, d, 1.2)), ("box", intersect_box(o, d, h)),
                    ("cylinder", intersect_cylinder(o, d, 0.7, 0.9))):
        hit = torch.isfinite(t)
        assert int(hit.sum()) > 1000 and bool((t[hit] > 0).all())
        p = (o + t * d)[:, hit].T
        if kind == "sphere":
            err = p.norm(dim=-1) - 1.2
            size = torch.full((3,), 1.2)
        elif kind == "box":
            err = (p / h).abs().amax(-1) - 1.0
            size = h
        else:
            err = torch.maximum(p[:, :2].norm(dim=-1) / 0.7, p[:, 2].abs() / 0.9) - 1.0
            size = torch.tensor([0.7, 0.7, 0.9])
        assert float(err.abs().max()) < 1e-3
        nrm = local_normal(kind, p, size)
        assert torch.allclose(nrm.norm(dim=-1), torch.ones(p.shape[0]), atol=1e-5)
        # outward: stepping along the normal leaves the solid
        q = p + 1e-2 * nrm
        if kind == "sphere":
            assert bool((q.norm(dim=-1) > 1.2).all())
        elif kind == "box":
            assert bool(((q / h).abs().amax(-1) > 1.0).all())
        else:
            assert bool((torch.maximum(q[:, :2].norm(dim=-1) / 0.7, q[:, 2].abs() / 0.9) > 1.0).all())


def test_textures_in_range_and_patterned():
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(2000, 3, generator=g) * 4 - 2
    for kind in TEXTURE_KINDS:
        tex = sample_texture(torch.Generator().manual_seed(3), (kind,))
        a = tex.albedo(pts)
        assert a.shape == (2000, 3) and float(a.min()) >= 0 and float(a.max()) <= 1
        assert torch.equal(a, tex.albedo(pts))
        if kind == "solid":
            assert float(a.std(0).max()) == 0.0
        else:
            assert float(a.std(0).max()) > 0.01, kind
    with pytest.raises(ValueError, match="plaid"):
        sample_texture(g, ("plaid",))
    rgb = hsv_to_rgb(torch.tensor([[0.0, 1.0, 1.0], [1 / 3, 1.0, 1.0], [2 / 3, 1.0, 0.5], [0.3, 0.0, 0.7]]))
    expect = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0.5], [0.7, 0.7, 0.7]])
    assert torch.allclose(rgb, expect, atol=1e-5)
