"""Loaders for real data: convention converters, distortion, error messages, the shared real scenes
(fern, DTU scan24, lego) checked geometrically, and `foresplat data inspect`.

Format round trips on synthetic fixtures are in test_data_loaders_formats.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from foresplat.data import detect_format, load_scene
from foresplat.data.loaders import DataFormatError, LoadOptions
from foresplat.data.loaders import conventions as cv
from foresplat.data.loaders.colmap_io import read_cameras_binary, read_points3d_binary
from foresplat.data.loaders.distortion import (Distortion, colmap_camera_to_pinhole, distort_image,
                                               distort_points, undistort_image, undistort_points)
from foresplat.data.loaders.geometry import (camera_centres, compare_cameras, optical_axis_distances,
                                             point_visibility, umeyama)


def random_rotations(n: int, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return cv.quat_to_rotmat(q)


def random_viewmats(n: int, seed: int = 0) -> np.ndarray:
    v = np.zeros((n, 4, 4))
    v[:, :3, :3] = random_rotations(n, seed)
    v[:, :3, 3] = np.random.default_rng(seed + 1).normal(size=(n, 3))
    v[:, 3, 3] = 1
    return v


def project_cv(view: np.ndarray, X: np.ndarray) -> np.ndarray:
    """OpenCV camera coordinates of world point X."""
    return view[:3, :3] @ X + view[:3, 3]


# --------------------------------------------------------------------------------- conventions

@pytest.mark.parametrize("name", ["opengl", "llff", "pytorch3d", "ned"])
def test_conventions_axis_semantics(name):
    """For each source convention, a point straight ahead / to the right / below the camera (as that
    convention defines those directions) lands at +z / +x / +y in the converted OpenCV camera."""
    R = random_rotations(4, seed=7)
    C = np.random.default_rng(3).normal(size=(4, 3))
    for Rb, c in zip(R, C):  # Rb columns: an orthonormal basis used to build the source pose
        if name == "opengl":  # c2w columns = (right, up, back)
            c2w = np.eye(4)
            c2w[:3, :3], c2w[:3, 3] = Rb, c
            view = cv.opengl_c2w_to_viewmat(c2w)
            fwd, right, down = -Rb[:, 2], Rb[:, 0], -Rb[:, 1]
        elif name == "llff":  # c2w columns = (down, right, back)
            pose = np.concatenate([Rb, c[:, None]], 1)[None]
            view = cv.llff_to_viewmat(pose)[0]
            fwd, right, down = -Rb[:, 2], Rb[:, 1], Rb[:, 0]
        elif name == "pytorch3d":  # X_cam = X_world @ R + T with camera axes (left, up, forward)
            T = -c @ Rb  # so that the camera centre is c
            view = cv.pytorch3d_to_viewmat(Rb[None], T[None])[0]
            fwd, right, down = Rb[:, 2], -Rb[:, 0], -Rb[:, 1]
        else:  # NED body c2w columns = (forward, right, down)
            q = cv.rotmat_to_quat(Rb, order="xyzw")
            view = cv.ned_c2w_to_viewmat(c[None], q[None])[0]
            fwd, right, down = Rb[:, 0], Rb[:, 1], Rb[:, 2]
        np.testing.assert_allclose(camera_centres(view[None])[0], c, atol=1e-9)
        for direction, axis in ((fwd, 2), (right, 0), (down, 1)):
            p = project_cv(view, c + 2.0 * direction)
            np.testing.assert_allclose(p, 2.0 * np.eye(3)[axis], atol=1e-9)
        np.testing.assert_allclose(np.linalg.det(view[:3, :3]), 1.0, atol=1e-9)


def test_conventions_inverses_round_trip():
    v = random_viewmats(6)
    np.testing.assert_allclose(cv.opengl_c2w_to_viewmat(cv.viewmat_to_opengl_c2w(v)), v, atol=1e-12)
    np.testing.assert_allclose(cv.llff_to_viewmat(cv.viewmat_to_llff(v)), v, atol=1e-12)
    np.testing.assert_allclose(cv.pytorch3d_to_viewmat(*cv.viewmat_to_pytorch3d(v)), v, atol=1e-12)
    np.testing.assert_allclose(cv.ned_c2w_to_viewmat(*cv.viewmat_to_ned_c2w(v)), v, atol=1e-12)
    q = cv.rotmat_to_quat(v[:, :3, :3])
    np.testing.assert_allclose(cv.colmap_to_viewmat(q, v[:, :3, 3]), v, atol=1e-12)
    np.testing.assert_allclose(cv.c2w_to_viewmat(np.linalg.inv(v)), v, atol=1e-12)


def test_quaternions_match_pycolmap():
    pycolmap = pytest.importorskip("pycolmap")
    q = np.random.default_rng(2).normal(size=(5, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for qi in q:  # pycolmap's Rotation3d takes xyzw
        ref = np.asarray(pycolmap.Rotation3d(qi[[1, 2, 3, 0]]).matrix())
        np.testing.assert_allclose(cv.quat_to_rotmat(qi), ref, atol=1e-12)
        np.testing.assert_allclose(cv.quat_to_rotmat(qi[[1, 2, 3, 0]], order="xyzw"), ref, atol=1e-12)
    with pytest.raises(ValueError, match="zero length"):
        cv.quat_to_rotmat(np.zeros(4))


def test_ndc_intrinsics_known_values_and_inverse():
    # W=200, H=100: isotropic scale = 50 px; norm_image_bounds scales x by 100 and y by 50
    K = cv.ndc_to_pixel_intrinsics([2.0, 2.0], [0.1, -0.2], "ndc_isotropic", 200, 100)
    np.testing.assert_allclose(K, [[100, 0, 95], [0, 100, 60], [0, 0, 1]])  # NDC +x left, +y up
    K = cv.ndc_to_pixel_intrinsics([2.0, 2.0], [0.1, -0.2], "ndc_norm_image_bounds", 200, 100)
    np.testing.assert_allclose(K, [[200, 0, 90], [0, 100, 60], [0, 0, 1]])
    for fmt in ("ndc_isotropic", "ndc_norm_image_bounds"):
        f, p = cv.pixel_to_ndc_intrinsics(K, fmt, 200, 100)
        np.testing.assert_allclose(cv.ndc_to_pixel_intrinsics(f, p, fmt, 200, 100), K, atol=1e-12)
    with pytest.raises(ValueError, match="intrinsics_format"):
        cv.ndc_to_pixel_intrinsics([1, 1], [0, 0], "screen", 10, 10)


def test_projection_decomposition_recovers_k_r_t():
    rng = np.random.default_rng(5)
    for i, v in enumerate(random_viewmats(5, seed=11)):
        K = cv.intrinsics(*rng.uniform(300, 900, 2), *rng.uniform(100, 500, 2))
        scale = (-1.0) ** i * rng.uniform(0.01, 50)
        P = scale * K @ v[:3]
        K2, v2 = cv.decompose_projection(P)
        np.testing.assert_allclose(K2, K, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(v2, v, atol=1e-9)
        U, Q = cv.rq_decompose(P[:, :3])
        np.testing.assert_allclose(U @ Q, P[:, :3], atol=1e-9 * np.abs(P).max())
        assert np.allclose(np.tril(U, -1), 0) and (np.diag(U) > 0).all()
    K = cv.intrinsics(500, 510, 200, 150)
    K[0, 1] = 2.5  # skew is reported, then dropped
    assert cv.projection_skew(K @ random_viewmats(1)[0, :3]) == pytest.approx(2.5 / 500)
    with pytest.raises(ValueError, match="singular"):
        cv.decompose_projection(np.zeros((3, 4)))


def test_umeyama_and_camera_comparison():
    v = random_viewmats(8, seed=4)
    R = random_rotations(1, seed=9)[0]
    from foresplat.data.loaders.geometry import Similarity

    sim = Similarity(3.5, R, np.array([1.0, -2.0, 0.5]))
    moved = sim.apply_viewmat(v)
    np.testing.assert_allclose(camera_centres(moved), sim.apply(camera_centres(v)), atol=1e-9)
    fit = umeyama(camera_centres(v), camera_centres(moved))
    assert fit.scale == pytest.approx(3.5) and np.allclose(fit.R, R) and np.allclose(fit.t, sim.t)
    agree = compare_cameras(v, moved)
    assert agree.centre_errors.max() < 1e-9 and agree.rotation_errors_deg.max() < 1e-5


# ----------------------------------------------------------------------------------- distortion

@pytest.mark.parametrize("model,params", [
    ("SIMPLE_RADIAL", [300.0, 160.0, 120.0, -0.08]),
    ("RADIAL", [300.0, 160.0, 120.0, -0.08, 0.02]),
    ("OPENCV", [300.0, 310.0, 161.0, 119.0, -0.2, 0.05, 0.003, -0.002]),
    ("OPENCV_FISHEYE", [300.0, 305.0, 160.0, 120.0, 0.05, -0.01, 0.004, -0.001]),
    ("FULL_OPENCV", [300.0, 310.0, 161.0, 119.0, -0.2, 0.05, 0.003, -0.002, 0.01, 0.02, -0.01, 0.005]),
])
def test_distortion_matches_colmap_and_inverts(model, params):
    """Forward models agree with pycolmap's Camera.img_from_cam; undistort_points inverts them."""
    pycolmap = pytest.importorskip("pycolmap")
    cam = pycolmap.Camera(model=model, width=320, height=240, params=params)
    fx, fy, cx, cy, d = colmap_camera_to_pinhole(model, params)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.5, 0.5, (2, 200))
    ref = np.asarray(cam.img_from_cam(np.stack([x, y, np.ones_like(x)], -1)))
    xd, yd = distort_points(x, y, d)
    np.testing.assert_allclose(np.stack([fx * xd + cx, fy * yd + cy], -1), ref, atol=1e-8)
    xu, yu, ok = undistort_points(xd, yd, d)
    assert ok.all()
    np.testing.assert_allclose(np.stack([xu, yu]), np.stack([x, y]), atol=1e-10)


def test_distort_then_undistort_image_is_identity_inside():
    H, W = 60, 80
    v, u = np.mgrid[0:H, 0:W] + 0.5
    img = np.stack([np.sin(u / 7.0), np.cos(v / 5.0), np.sin((u + v) / 11.0)], -1).astype(np.float32) * 0.4 + 0.5
    K = cv.intrinsics(70.0, 72.0, 41.0, 29.5)
    for d in (Distortion("radial_tangential", (-0.3, 0.1), (0.01, -0.005)), Distortion("fisheye", (0.1, -0.05))):
        dist, valid = distort_image(img, K, d)
        back, valid2 = undistort_image(dist, K, d)
        inner = np.zeros((H, W), bool)
        inner[8:-8, 8:-8] = True
        err = np.abs(back - img)[inner & valid2].mean()
        assert err < 0.01, err
        assert np.abs(dist - img)[inner].mean() > 5 * err  # the distortion itself is visible
    with pytest.raises(ValueError, match="at most 4"):
        Distortion("fisheye", (0.1, 0, 0, 0, 0.2))
    with pytest.raises(ValueError, match="unsupported camera model 'FOV'"):
        colmap_camera_to_pinhole("FOV", [1, 2, 3, 4, 5])


# --------------------------------------------------------------------------------------- errors

def _tiny_transforms(root, n=3, size=(8, 6)):
    frames = []
    for i in range(n):
        Image.fromarray(np.full((size[1], size[0], 3), 40 * i, np.uint8)).save(root / f"f{i}.png")
        frames.append({"file_path": f"f{i}.png", "transform_matrix": np.eye(4).tolist()})
    (root / "transforms.json").write_text(json.dumps({"fl_x": 10.0, "w": size[0], "h": size[1], "frames": frames}))


def test_bad_input_errors_name_file_and_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_scene(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="cannot tell the scene format"):
        detect_format(tmp_path / "empty")
    # malformed json
    bad = tmp_path / "badjson"
    bad.mkdir()
    (bad / "transforms.json").write_text('{"frames": [1, 2,}')
    with pytest.raises(DataFormatError, match=r"transforms.json: malformed JSON at line 1"):
        load_scene(bad)
    # truncated image
    tr = tmp_path / "trunc"
    tr.mkdir()
    _tiny_transforms(tr)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tr / "f1.png")
    data = (tr / "f1.png").read_bytes()
    (tr / "f1.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"f1.png: cannot read image"):
        load_scene(tr)
    # images of different sizes with one shared calibration
    ds = tmp_path / "sizes"
    ds.mkdir()
    _tiny_transforms(ds)
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(ds / "f2.png")
    with pytest.raises(DataFormatError, match=r"f2.png: image is 16x12 but .*f0.png is 8x6; images of different "
                                              r"sizes need per-frame intrinsics"):
        load_scene(ds)
    # inconsistent counts (LLFF: poses vs images)
    ll = tmp_path / "llff"
    (ll / "images").mkdir(parents=True)
    pose = np.concatenate([np.eye(3), np.zeros((3, 1)), [[6.0], [8.0], [10.0]]], 1)  # [R | t | hwf]
    np.save(ll / "poses_bounds.npy", np.tile(np.r_[pose.ravel(), 1.0, 5.0][None], (3, 1)))
    for i in range(2):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(ll / "images" / f"{i}.png")
    with pytest.raises(DataFormatError, match=r"images: 2 images but .*poses_bounds.npy has 3 poses"):
        load_scene(ll)
    np.save(ll / "poses_bounds.npy", np.zeros((3, 15)))
    with pytest.raises(DataFormatError, match=r"poses_bounds.npy: expected an \[N, 17\] array"):
        load_scene(ll)
    # a frame without a pose, bad options, unknown format
    (bad / "transforms.json").write_text(json.dumps({"fl_x": 10, "frames": [{"file_path": "a.png"}]}))
    with pytest.raises(DataFormatError, match="frame 0: needs 'file_path' and 'transform_matrix'"):
        load_scene(bad)
    with pytest.raises(TypeError, match="unknown load option"):
        load_scene(tr, max_veiws=3)
    with pytest.raises(ValueError, match="downscale must be a positive integer"):
        load_scene(tr, downscale=0)
    with pytest.raises(ValueError, match="unknown format"):
        load_scene(tr, format="ply")


def test_colmap_binary_readers_reject_truncation(tmp_path):
    import struct

    p = tmp_path / "points3D.bin"
    rec = struct.pack("<Q3d3BdQ", 1, 0.1, 0.2, 0.3, 1, 2, 3, 0.5, 1) + struct.pack("<ii", 1, 0)
    p.write_bytes(struct.pack("<Q", 2) + rec + rec)
    pts = read_points3d_binary(p)
    np.testing.assert_allclose(pts.xyz, [[0.1, 0.2, 0.3]] * 2)
    assert pts.rgb.tolist() == [[1, 2, 3]] * 2 and pts.track_length.tolist() == [1, 1]
    p.write_bytes(struct.pack("<Q", 2) + rec + rec[:-5])
    with pytest.raises(DataFormatError, match="points3D.bin: truncated"):
        read_points3d_binary(p)
    c = tmp_path / "cameras.bin"
    c.write_bytes(struct.pack("<QiiQQ", 1, 1, 99, 10, 10))
    with pytest.raises(DataFormatError, match="unknown model id 99"):
        read_cameras_binary(c)


# ------------------------------------------------------------------------------ real scenes

def test_fern_llff_sparse_points_project_inside(shared_data):
    s = load_scene(shared_data / "llff_fern", downscale=8)
    assert detect_format(shared_data / "llff_fern") == "llff"
    assert s.images.shape == (20, 378, 504, 3) and s.images.dtype == torch.float32
    assert 0 <= float(s.images.min()) and float(s.images.max()) <= 1
    K = s.cameras.Ks[0]
    assert float(K[0, 0]) == pytest.approx(3260.5263 / 8, rel=1e-4)  # hwf focal at 4032 px, / 8
    assert (float(K[0, 2]), float(K[1, 2])) == pytest.approx((252.0, 189.0))
    assert 0 < s.near < s.far and s.points is not None and s.points.shape[0] > 5000
    vis = point_visibility(s.cameras.viewmats.double().numpy(), s.cameras.Ks.double().numpy(),
                           s.width, s.height, s.points.double().numpy())
    assert vis.in_front.min() > 0.99 and vis.inside.min() > 0.9, (vis.inside.min(), vis.inside.mean())
    _assert_point_colours_agree(s)


def _assert_point_colours_agree(s, num_views: int = 10):
    """The image colour under each visible sparse point is closer to the point's colour than the colour
    under a shuffled point, and much closer than under the mirrored projection (u -> W - u): fails for
    mirrored, transposed or wrongly scaled cameras. Occlusion is ignored, so the margin is moderate."""
    uv, z = s.cameras.project(s.points)
    g = torch.Generator().manual_seed(0)
    err, shuffled, mirrored = [], [], []
    for v in np.linspace(0, s.num_views - 1, num_views).round().astype(int).tolist():
        u, w = uv[v].unbind(-1)
        for flip, out in ((False, err), (True, mirrored)):
            uu = s.width - u if flip else u
            ok = (z[v] > 0) & (uu >= 0) & (uu < s.width) & (w >= 0) & (w < s.height)
            pix = s.images[v, w[ok].long(), uu[ok].long()]
            col = s.point_colors[ok]
            out.append(float((pix - col).abs().mean()))
            if not flip:
                shuffled.append(float((pix - col[torch.randperm(len(col), generator=g)]).abs().mean()))
    e, sh, mi = np.mean(err), np.mean(shuffled), np.mean(mirrored)
    assert e < 0.9 * sh and e < 0.75 * mi, (e, sh, mi)


def test_dtu_calibrated_cameras_agree_with_colmap(shared_data):
    """cameras_sphere.npz (calibrated, mm) vs poses_bounds.npy (COLMAP) after a similarity alignment."""
    root = shared_data / "dtu_scan24"
    assert detect_format(root) == "idr"
    idr = load_scene(root)
    llff = load_scene(root, format="llff")
    assert idr.images.shape == llff.images.shape == (49, 300, 400, 3)
    assert idr.masks is not None and idr.masks.shape == (49, 300, 400)
    agree = compare_cameras(llff.cameras.viewmats.double().numpy(), idr.cameras.viewmats.double().numpy())
    rot, ctr = agree.rotation_errors_deg, agree.centre_errors
    print(f"DTU scan24 COLMAP->calibrated: scale {agree.similarity.scale:.3f}, rotation error median "
          f"{np.median(rot):.3f} mean {rot.mean():.3f} max {rot.max():.3f} deg; centre error median "
          f"{np.median(ctr):.3f} mean {ctr.mean():.3f} max {ctr.max():.3f} mm")
    assert np.median(rot) < 0.5 and rot.max() < 1.0
    assert np.median(ctr) < 3.0 and ctr.max() < 6.0
    # intrinsics agree too (focal at 400x300: COLMAP f / 4 vs calibrated)
    assert float(idr.cameras.Ks[:, 0, 0].mean()) == pytest.approx(float(llff.cameras.Ks[0, 0, 0]), rel=0.03)
    for s in (idr, llff):  # points3D.bin: in COLMAP's frame, carried into the calibrated one by the loader
        vis = point_visibility(s.cameras.viewmats.double().numpy(), s.cameras.Ks.double().numpy(),
                               s.width, s.height, s.points.double().numpy())
        print(f"DTU {s.name} points inside: min {vis.inside.min():.3f} mean {vis.inside.mean():.3f}")
        assert vis.in_front.min() > 0.99 and vis.inside.mean() > 0.85 and vis.inside.min() > 0.7
        _assert_point_colours_agree(s)
    norm = load_scene(root, normalize=True, max_views=4, masks=False)
    d = norm.cameras.centers().norm(dim=-1)
    assert float(d.min()) > 1.0 and float(d.max()) < 6.0 and norm.near < float(d.min()) - 0.9


def test_lego_cameras_look_at_the_origin(shared_data):
    root = shared_data / "nerf_synthetic_lego"
    s = load_scene(root, split="train")
    assert s.images.shape == (100, 400, 400, 3)
    angle_x = 0.6911112070083618  # transforms_train.json
    assert float(s.cameras.Ks[0, 0, 0]) == pytest.approx(0.5 * 400 / math.tan(0.5 * angle_x), rel=1e-6)
    dist = optical_axis_distances(s.cameras.viewmats.double().numpy(), np.zeros(3))
    radius = s.cameras.centers().norm(dim=-1)
    assert dist.max() < 0.01 * float(radius.min()), dist.max()
    assert float(s.masks.min()) == 0.0 and float(s.masks.max()) == 1.0
    black = load_scene(root, split="train", background=(0.0, 0.0, 0.0), max_views=3)
    empty = s.masks[[0, 50, 99]] == 0
    assert bool((s.images[[0, 50, 99]][empty] == 1.0).all()) and bool((black.images[empty] == 0.0).all())
    assert load_scene(root, split="test").num_views == 25
    assert load_scene(root, max_views=200, points=False).num_views == 125  # default: every split


# ------------------------------------------------------------------------------------------- CLI

def test_cli_data_inspect(shared_data, tmp_path, capsys):
    from foresplat.cli import main

    sheet = tmp_path / "sheets" / "fern.png"
    assert main(["data", "inspect", str(shared_data / "llff_fern"), "--downscale", "8", "--sheet", str(sheet)]) == 0
    out = capsys.readouterr().out
    for want in ("format        llff", "views         20", "resolution    504 x 378", "fx 407.57",
                 "near / far", "extent", "sparse points 10091"):
        assert want in out, out
    im = Image.open(sheet)
    assert im.size[0] > 5 * 160 and im.mode == "RGB"
    assert main(["data", "inspect", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_load_options_validate():
    assert LoadOptions().validate().background == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="background"):
        LoadOptions(background=(2, 0, 0)).validate()
    with pytest.raises(ValueError, match="near < far"):
        LoadOptions(near=5, far=1).validate()
