"""Round trips through every scene format: a synthetic scene is written in the format's exact layout
(with that format's own camera convention), loaded back with `load_scene`, and the cameras must
come back to ~1e-5 (viewmats and Ks), with images, masks, depths and points where the format has them.
"""

from __future__ import annotations

import gzip
import json
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from foresplat.cameras import Cameras
from foresplat.data import detect_format, load_scene
from foresplat.data.loaders import DataFormatError
from foresplat.data.loaders.conventions import (half_pixel_to_integer_centre, pixel_to_ndc_intrinsics,
                                                rotmat_to_quat, viewmat_to_llff, viewmat_to_ned_c2w,
                                                viewmat_to_opengl_c2w, viewmat_to_pytorch3d)
from foresplat.data.loaders.geometry import camera_centres
from foresplat.data.loaders.tartanair import TARTANAIR_K
from foresplat.data.scene import Scene
from foresplat.data.synthetic import SyntheticConfig, generate_scene


def synthetic(seed: int = 3, width: int = 48, height: int = 36, views: int = 5, per_view_k: bool = False,
              centred: bool = False) -> Scene:
    """A small ray-traced scene; intrinsics perturbed (fx != fy, off-centre principal point, optionally
    different per view) so that axis or per-view mix-ups show in the round trips."""
    s = generate_scene(seed, SyntheticConfig(width=width, height=height, num_views=views, supersample=1,
                                             shadows=False, points_per_view=32))
    K = s.cameras.Ks.double().clone()
    if not centred:
        K[:, 1, 1] *= 1.07
        K[:, 0, 2] += 1.5
        K[:, 1, 2] -= 0.75
    if per_view_k:
        K[:, 0, 0] += torch.arange(views, dtype=torch.float64) * 2.0
        K[:, 1, 2] += torch.arange(views, dtype=torch.float64) * 0.25
    return replace(s, cameras=Cameras(s.cameras.viewmats, K.float(), width, height))


def np_views(s: Scene) -> np.ndarray:
    return s.cameras.viewmats.double().numpy()


def np_Ks(s: Scene) -> np.ndarray:
    return s.cameras.Ks.double().numpy()


def save_png(path: Path, img: torch.Tensor | np.ndarray) -> None:
    a = img.numpy() if isinstance(img, torch.Tensor) else img
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def assert_cameras(got: Scene, viewmats: np.ndarray, Ks: np.ndarray, tol: float = 1e-5) -> None:
    torch.testing.assert_close(got.cameras.viewmats.double(), torch.as_tensor(viewmats, dtype=torch.float64),
                               atol=tol, rtol=tol)
    torch.testing.assert_close(got.cameras.Ks.double(), torch.as_tensor(Ks, dtype=torch.float64),
                               atol=tol, rtol=tol)


def assert_images(got: Scene, ref: Scene) -> None:
    assert got.images.dtype == torch.float32 and tuple(got.images.shape) == tuple(ref.images.shape)
    assert float((got.images - ref.images).abs().max()) <= 0.5 / 255 + 1e-6


# --------------------------------------------------------------------------------------- transforms

def write_nerfstudio(root: Path, s: Scene, per_frame: bool = False, folder: str = "images") -> Path:
    """nerfstudio transforms.json: OpenGL camera-to-world, fl_x/fl_y/cx/cy/w/h."""
    K = np_Ks(s)
    frames = []
    for i in range(s.num_views):
        save_png(root / folder / f"frame_{i:05d}.png", s.images[i])
        fr = {"file_path": f"{folder}/frame_{i:05d}.png",
              "transform_matrix": viewmat_to_opengl_c2w(np_views(s)[i]).tolist()}
        if per_frame:
            fr.update(fl_x=K[i, 0, 0], fl_y=K[i, 1, 1], cx=K[i, 0, 2], cy=K[i, 1, 2], w=s.width, h=s.height)
        frames.append(fr)
    meta = {"camera_model": "OPENCV", "frames": frames}
    if not per_frame:
        meta.update(fl_x=K[0, 0, 0], fl_y=K[0, 1, 1], cx=K[0, 0, 2], cy=K[0, 1, 2], w=s.width, h=s.height)
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def test_transforms_nerfstudio_round_trip(tmp_path):
    s = synthetic()
    write_nerfstudio(tmp_path, s)
    assert detect_format(tmp_path) == "transforms"
    got = load_scene(tmp_path)
    assert_cameras(got, np_views(s), np_Ks(s))
    assert_images(got, s)
    assert got.masks is None and got.depths is None


def test_transforms_per_frame_intrinsics_round_trip(tmp_path):
    s = synthetic(per_view_k=True)
    write_nerfstudio(tmp_path, s, per_frame=True)
    got = load_scene(tmp_path)
    assert_cameras(got, np_views(s), np_Ks(s))


def test_transforms_downscale_uses_images_n_or_resizes(tmp_path):
    s = synthetic(width=48, height=36)
    write_nerfstudio(tmp_path, s)
    half_K = np_Ks(s).copy()
    half_K[:, :2] *= 0.5
    resized = load_scene(tmp_path, downscale=2)  # no images_2/: area-resized in memory
    assert (resized.width, resized.height) == (24, 18)
    assert_cameras(resized, np_views(s), half_K)
    torch.testing.assert_close(resized.images, torch.nn.functional.avg_pool2d(
        load_scene(tmp_path).images.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1), atol=1e-5, rtol=0)
    # a pre-downscaled images_2/ folder wins (distinct content proves which one was read)
    for i in range(s.num_views):
        save_png(tmp_path / "images_2" / f"frame_{i:05d}.png", np.full((18, 24, 3), 0.25 + 0.1 * i))
    small = load_scene(tmp_path, downscale=2)
    assert_cameras(small, np_views(s), half_K)
    assert abs(float(small.images[1].mean()) - 0.35) < 2 / 255


def test_transforms_blender_rgba_camera_angle(tmp_path):
    """NeRF Blender: camera_angle_x, file paths without suffix, RGBA onto the background, alpha -> mask."""
    s = synthetic(centred=True, width=40, height=40)
    W = s.width
    fx = float(s.cameras.Ks[0, 0, 0])
    angle = 2 * np.arctan(0.5 * W / fx)
    frames = []
    alpha = s.masks.numpy() * 0.8 + 0.1
    for i in range(s.num_views):
        rgba = np.concatenate([s.images[i].numpy(), alpha[i][..., None]], -1)
        save_png(tmp_path / "train" / f"r_{i}.png", rgba)
        frames.append({"file_path": f"./train/r_{i}", "rotation": 0.01,
                       "transform_matrix": viewmat_to_opengl_c2w(np_views(s)[i]).tolist()})
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    (tmp_path / "transforms_test.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames[:2]}))
    for bg in [(1.0, 1.0, 1.0), (0.0, 0.2, 0.0)]:
        got = load_scene(tmp_path, background=bg)
        assert_cameras(got, np_views(s), np_Ks(s))
        a8 = np.round(alpha * 255) / 255
        want = s.images.numpy() * a8[..., None] + np.asarray(bg) * (1 - a8[..., None])
        assert np.abs(got.images.numpy() - want).max() < 1.0 / 255
        np.testing.assert_allclose(got.masks.numpy(), a8, atol=1e-6)
    assert load_scene(tmp_path, split="test").num_views == 2
    # "all" (the default) reads every split; the test frames repeat train images: read once
    assert load_scene(tmp_path, split="all").num_views == s.num_views
    assert load_scene(tmp_path, split="train").num_views == s.num_views
    for i in range(s.num_views):  # a half-resolution sibling folder train_2/ (resolution-free camera_angle_x)
        save_png(tmp_path / "train_2" / f"r_{i}.png", np.full((20, 20, 3), 0.5))
    half = load_scene(tmp_path, downscale=2)
    K2 = np_Ks(s).copy()
    K2[:, :2] *= 0.5
    assert_cameras(half, np_views(s), K2)
    assert abs(float(half.images.mean()) - 0.5) < 1 / 255


def test_transforms_missing_images_skipped_with_warning(tmp_path):
    s = synthetic()
    write_nerfstudio(tmp_path, s)
    (tmp_path / "images" / "frame_00002.png").unlink()
    with pytest.warns(UserWarning, match=r"1 frame\(s\) skipped .*frame_00002"):
        got = load_scene(tmp_path)
    keep = [0, 1, 3, 4]
    assert_cameras(got, np_views(s)[keep], np_Ks(s)[keep])


def test_transforms_distortion_is_undistorted(tmp_path):
    """An OPENCV camera with k1 k2 p1 p2: the loader's undistorted images match the pinhole source."""
    from foresplat.data.loaders.distortion import Distortion, distort_image

    s = synthetic(width=64, height=48, views=2)
    v, u = np.mgrid[0:48, 0:64] + 0.5
    pattern = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * u / 19) * np.cos(2 * np.pi * v / 23),
                        0.5 + 0.4 * np.sin(2 * np.pi * (u + v) / 29), 0.5 + 0.3 * np.cos(2 * np.pi * v / 17)], -1)
    s = replace(s, images=torch.from_numpy(np.stack([pattern, pattern[:, ::-1]]).astype(np.float32)))
    d = Distortion("radial_tangential", (-0.3, 0.08), (0.006, -0.004))  # up to ~4 px displacement
    write_nerfstudio(tmp_path, s)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta.update(k1=d.k[0], k2=d.k[1], p1=d.p[0], p2=d.p[1])
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    K = np_Ks(s)[0]
    for i in range(s.num_views):
        save_png(tmp_path / "images" / f"frame_{i:05d}.png", distort_image(s.images[i].numpy(), K, d, fill=1.0)[0])
    got = load_scene(tmp_path)
    raw = load_scene(tmp_path, undistort=False)
    assert_cameras(got, np_views(s), np_Ks(s))
    inner = (slice(None), slice(6, -6), slice(6, -6))
    err = float((got.images[inner] - s.images[inner]).abs().mean())
    err_raw = float((raw.images[inner] - s.images[inner]).abs().mean())
    assert err < 0.02 and err < 0.25 * err_raw, (err, err_raw)


def test_transforms_scannetpp_layout_fisheye_splits_masks(tmp_path):
    """ScanNet++ dslr/nerfstudio/transforms.json: OPENCV_FISHEYE, frames + test_frames, images in
    ../resized_images and masks in ../resized_anon_masks."""
    from foresplat.data.loaders.distortion import Distortion, distort_image

    s = synthetic(width=64, height=48, views=5)
    dslr = tmp_path / "0a5c013435" / "dslr"
    d = Distortion("fisheye", (0.05, -0.02, 0.004, -0.001))
    K = np_Ks(s)[0]
    frames = []
    for i in range(s.num_views):
        save_png(dslr / "resized_images" / f"DSC{i:05d}.JPG.png", distort_image(s.images[i].numpy(), K, d)[0])
        mask = np.ones((s.height, s.width))
        mask[:10, :12] = 0  # anonymized region
        save_png(dslr / "resized_anon_masks" / f"DSC{i:05d}.png", mask)
        frames.append({"file_path": f"DSC{i:05d}.JPG.png", "mask_path": f"DSC{i:05d}.png",
                       "transform_matrix": viewmat_to_opengl_c2w(np_views(s)[i]).tolist()})
    meta = {"camera_model": "OPENCV_FISHEYE", "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2],
            "w": s.width, "h": s.height, "k1": d.k[0], "k2": d.k[1], "k3": d.k[2], "k4": d.k[3],
            "frames": frames[:3], "test_frames": frames[3:]}
    (dslr / "nerfstudio").mkdir(parents=True)
    (dslr / "nerfstudio" / "transforms.json").write_text(json.dumps(meta))
    got = load_scene(dslr / "nerfstudio", split="train")
    assert got.name == "0a5c013435" and got.num_views == 3
    assert_cameras(got, np_views(s)[:3], np_Ks(s)[:3])
    assert float(got.masks[:, 2:6, 2:8].max()) == 0.0 and float(got.masks[:, 30:, 40:].min()) > 0.999
    inner = (slice(None), slice(6, -6), slice(6, -6))
    assert float((got.images[inner] - s.images[:3][inner]).abs().mean()) < 0.03
    assert load_scene(dslr / "nerfstudio", split="test").num_views == 2
    assert load_scene(dslr / "nerfstudio", split="all").num_views == 5


# ------------------------------------------------------------------------------------------- COLMAP

def test_colmap_binary_round_trip_via_pycolmap(tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    s = synthetic(per_view_k=True)
    rec = pycolmap.Reconstruction()
    K = np_Ks(s)
    for i in range(s.num_views):
        cam = pycolmap.Camera(model="PINHOLE", width=s.width, height=s.height,
                              params=[K[i, 0, 0], K[i, 1, 1], K[i, 0, 2], K[i, 1, 2]], camera_id=i + 1)
        rec.add_camera_with_trivial_rig(cam)
        v = np_views(s)[i]
        img = pycolmap.Image(name=f"view_{i:03d}.png", camera_id=i + 1, image_id=i + 1)
        rec.add_image_with_trivial_frame(img, pycolmap.Rigid3d(pycolmap.Rotation3d(v[:3, :3]), v[:3, 3]))
        save_png(tmp_path / "images" / f"view_{i:03d}.png", s.images[i])
    pts = s.points.double().numpy()
    cols = (s.point_colors.numpy() * 255).round().astype(np.uint8)
    for p, c in zip(pts, cols):
        rec.add_point3D(p, pycolmap.Track(), c)
    (tmp_path / "sparse" / "0").mkdir(parents=True)
    rec.write_binary(str(tmp_path / "sparse" / "0"))
    assert detect_format(tmp_path) == "colmap"
    got = load_scene(tmp_path)
    assert_cameras(got, np_views(s), K)
    assert_images(got, s)
    order = np.lexsort(pts.T)
    got_pts = got.points.double().numpy()
    np.testing.assert_allclose(got_pts[np.lexsort(got_pts.T)], pts[order], atol=1e-6)
    np.testing.assert_allclose(got.point_colors.numpy()[np.lexsort(got_pts.T)], cols[order] / 255.0, atol=1e-6)


def test_colmap_text_round_trip_classic_files(tmp_path):
    """A hand-written COLMAP text model (cameras.txt, images.txt, points3D.txt; no rigs/frames)."""
    s = synthetic()
    K = np_Ks(s)[0]
    model = tmp_path / "sparse" / "0"
    model.mkdir(parents=True)
    (model / "cameras.txt").write_text(
        "# Camera list\n"
        f"1 PINHOLE {s.width} {s.height} "
        f"{' '.join(repr(float(x)) for x in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))}\n")
    lines = ["# Image list"]
    for i in range(s.num_views):
        v = np_views(s)[i]
        q = rotmat_to_quat(v[:3, :3])  # wxyz
        lines.append(f"{i + 1} {' '.join(repr(float(x)) for x in q)} {' '.join(repr(float(x)) for x in v[:3, 3])} "
                     f"1 img{i}.png")
        lines.append("")
        save_png(tmp_path / "images" / f"img{i}.png", s.images[i])
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    (model / "points3D.txt").write_text("".join(
        f"{j + 1} {p[0]!r} {p[1]!r} {p[2]!r} 10 20 30 0.5\n" for j, p in enumerate(s.points.double().tolist())))
    got = load_scene(tmp_path, format="colmap")
    assert_cameras(got, np_views(s), np.repeat(K[None], s.num_views, 0))
    assert got.points.shape == s.points.shape


# --------------------------------------------------------------------------------------------- LLFF

def write_points3d_bin(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """COLMAP points3D.bin (id, xyz, rgb, error, track of (image_id, point2D_idx))."""
    out = [struct.pack("<Q", len(xyz))]
    for j, (p, c) in enumerate(zip(xyz, rgb)):
        out.append(struct.pack("<Q3d3BdQ", j + 1, *p, *c, 0.25, 2))
        out.append(struct.pack("<iiii", 1, j, 2, j))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(out))


def test_llff_round_trip_with_images_n_and_points(tmp_path):
    s = synthetic(centred=True)
    full_w, full_h = 4 * s.width, 4 * s.height
    f_full = 4 * float(s.cameras.Ks[0, 0, 0])
    poses = viewmat_to_llff(np_views(s))
    hwf = np.broadcast_to(np.array([full_h, full_w, f_full])[None, :, None], (s.num_views, 3, 1))
    bounds = np.stack([np.full(s.num_views, 1.5), np.full(s.num_views, 20.0) + np.arange(s.num_views)], 1)
    arr = np.concatenate([np.concatenate([poses, hwf], 2).reshape(s.num_views, 15), bounds], 1)
    np.save(tmp_path / "poses_bounds.npy", arr)
    for i in range(s.num_views):
        save_png(tmp_path / "images_4" / f"IMG_{i:04d}.png", s.images[i])
    rgb = (s.point_colors.numpy() * 255).round().astype(np.uint8)
    write_points3d_bin(tmp_path / "sparse" / "0" / "points3D.bin", s.points.double().numpy(), rgb)
    assert detect_format(tmp_path) == "llff"
    got = load_scene(tmp_path)  # the largest images: images_4
    assert_cameras(got, np_views(s), np_Ks(s))
    assert_images(got, s)
    assert (got.near, got.far) == (1.5, 20.0 + s.num_views - 1)
    np.testing.assert_allclose(got.points.double().numpy(), s.points.double().numpy(), atol=1e-6)
    np.testing.assert_allclose(got.point_colors.numpy(), rgb / 255.0, atol=1e-6)
    sub = load_scene(tmp_path, downscale=8, max_views=3)  # images_4 resized by 2 in memory
    K8 = np_Ks(s).copy()
    K8[:, :2] *= 0.5
    idx = [0, 2, 4]
    assert_cameras(sub, np_views(s)[idx], K8[idx])
    with pytest.raises(ValueError, match="downscale=2 requested"):
        load_scene(tmp_path, downscale=2)


# ---------------------------------------------------------------------------------------- IDR / NeuS

def test_idr_round_trip_and_normalization(tmp_path):
    s = synthetic(per_view_k=True)
    factor = 2  # calibration at twice the stored resolution (images_2, mask_2)
    K_full = np_Ks(s).copy()
    K_full[:, :2] *= factor
    rng = np.random.default_rng(0)
    radius, centre = 1.7, rng.normal(size=3)
    S = np.eye(4)
    S[:3, :3] *= radius
    S[:3, 3] = centre
    cams = {}
    for i in range(s.num_views):
        P = np.eye(4)
        P[:3, :4] = half_pixel_to_integer_centre(K_full[i]) @ np_views(s)[i][:3, :4]
        cams[f"world_mat_{i}"] = P * (-3.0 if i % 2 else 2.0)  # projective scale (and sign) is arbitrary
        cams[f"scale_mat_{i}"] = S
        save_png(tmp_path / "images_2" / f"{i:06d}.png", s.images[i])
        save_png(tmp_path / "mask_2" / f"{i:03d}.png", s.masks[i].unsqueeze(-1).expand(-1, -1, 3))
    np.savez(tmp_path / "cameras_sphere.npz", **cams)
    assert detect_format(tmp_path) == "idr"
    got = load_scene(tmp_path)
    assert_cameras(got, np_views(s), np_Ks(s), tol=2e-5)
    torch.testing.assert_close(got.masks, s.masks)
    norm = load_scene(tmp_path, normalize=True)
    c_norm = (s.cameras.centers().double() - torch.as_tensor(centre)) / radius
    torch.testing.assert_close(norm.cameras.centers().double(), c_norm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norm.cameras.viewmats[:, :3, :3], s.cameras.viewmats[:, :3, :3], atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.cameras.Ks, s.cameras.Ks, atol=1e-4, rtol=1e-5)
    d = norm.cameras.centers().norm(dim=-1)
    assert norm.near <= float(d.min()) - 1 + 1e-6 and norm.far >= float(d.max()) + 1 - 1e-6


# ------------------------------------------------------------------------------------------- CO3Dv2

def test_co3d_round_trip_with_masks_and_depths(tmp_path):
    s = synthetic(per_view_k=True)
    root, cat, seq = tmp_path, "teddybear", "34_1403_4393"
    R, T = viewmat_to_pytorch3d(np_views(s))
    anns = []
    for i in range(s.num_views):
        fmt = "ndc_isotropic" if i % 2 else "ndc_norm_image_bounds"
        f, p = pixel_to_ndc_intrinsics(np_Ks(s)[i], fmt, s.width, s.height)
        base = f"{cat}/{seq}"
        save_png(root / base / "images" / f"frame{i + 1:06d}.png", s.images[i])
        save_png(root / base / "masks" / f"frame{i + 1:06d}.png", s.masks[i].numpy())
        depth16 = (s.depths[i].numpy() / 2.0).astype(np.float16)  # stored = depth / scale_adjustment
        (root / base / "depths").mkdir(parents=True, exist_ok=True)
        Image.fromarray(depth16.view(np.uint16)).save(root / base / "depths" / f"frame{i + 1:06d}.png")
        anns.append({"sequence_name": seq, "frame_number": i + 1, "frame_timestamp": i / 30.0,
                     "image": {"path": f"{base}/images/frame{i + 1:06d}.png", "size": [s.height, s.width]},
                     "mask": {"path": f"{base}/masks/frame{i + 1:06d}.png", "mass": 100.0},
                     "depth": {"path": f"{base}/depths/frame{i + 1:06d}.png", "scale_adjustment": 2.0,
                               "mask_path": None},
                     "viewpoint": {"R": R[i].tolist(), "T": T[i].tolist(), "focal_length": f.tolist(),
                                   "principal_point": p.tolist(), "intrinsics_format": fmt}})
    anns.append(dict(anns[0], sequence_name="other_seq"))  # a second sequence in the same file
    with gzip.open(root / cat / "frame_annotations.jgz", "wt", encoding="utf-8") as fh:
        json.dump(anns[::-1], fh)  # unsorted: the loader sorts by frame_number
    seq_dir = root / cat / seq
    assert detect_format(seq_dir) == "co3d"
    got = load_scene(seq_dir)
    assert_cameras(got, np_views(s), np_Ks(s))
    assert_images(got, s)
    assert float((got.masks - s.masks).abs().max()) <= 0.5 / 255 + 1e-6
    torch.testing.assert_close(got.depths, s.depths, rtol=2e-3, atol=0)
    assert load_scene(root / cat, sequence=seq).num_views == s.num_views
    with pytest.raises(ValueError, match="2 sequences"):
        load_scene(root / cat)


# ---------------------------------------------------------------------------------------- TartanAir

def test_tartanair_round_trip(tmp_path):
    s = synthetic(width=64, height=48)  # 640x480 / 10: the fixed TartanAir K scales by 0.1
    traj = tmp_path / "abandonedfactory" / "Easy" / "P001"
    t, q = viewmat_to_ned_c2w(np_views(s))
    lines = [" ".join(repr(float(x)) for x in np.concatenate([t[i], q[i]])) for i in range(s.num_views)]
    (traj / "depth_left").mkdir(parents=True)
    (traj / "pose_left.txt").write_text("\n".join(lines) + "\n")
    for i in range(s.num_views):
        save_png(traj / "image_left" / f"{i:06d}_left.png", s.images[i])
        np.save(traj / "depth_left" / f"{i:06d}_left_depth.npy", s.depths[i].numpy())
    assert detect_format(traj) == "tartanair"
    got = load_scene(traj)
    K = TARTANAIR_K.copy()
    K[:2] *= 0.1
    assert_cameras(got, np_views(s), np.repeat(K[None], s.num_views, 0))
    torch.testing.assert_close(got.depths, s.depths)
    assert load_scene(tmp_path / "abandonedfactory" / "Easy", max_views=2).num_views == 2
    (traj / "image_left" / "000004_left.png").unlink()
    with pytest.raises(ValueError, match="4 images but .*pose_left.txt has 5 poses"):
        load_scene(traj)


# --------------------------------------------------------------------------------------- BlendedMVS

def write_pfm(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = a.shape
    path.write_bytes(f"Pf\n{w} {h}\n-1.0\n".encode() + np.flipud(a).astype("<f4").tobytes())


def test_blendedmvs_round_trip(tmp_path):
    s = synthetic(per_view_k=True)
    for i in range(s.num_views):
        E, K = np_views(s)[i], half_pixel_to_integer_centre(np_Ks(s)[i])
        text = ("extrinsic\n" + "\n".join(" ".join(repr(float(x)) for x in row) for row in E) + "\n\n"
                "intrinsic\n" + "\n".join(" ".join(repr(float(x)) for x in row) for row in K) + "\n\n"
                f"{0.5 + i} 0.05 192 {30.0 + i}\n")
        (tmp_path / "cams").mkdir(exist_ok=True)
        (tmp_path / "cams" / f"{i:08d}_cam.txt").write_text(text)
        save_png(tmp_path / "blended_images" / f"{i:08d}.png", s.images[i])  # lossless stand-in for .jpg
        save_png(tmp_path / "blended_images" / f"{i:08d}_masked.png", np.zeros((s.height, s.width, 3)))
        write_pfm(tmp_path / "rendered_depth_maps" / f"{i:08d}.pfm", s.depths[i].numpy())
    (tmp_path / "cams" / "pair.txt").write_text(f"{s.num_views}\n")
    assert detect_format(tmp_path) == "blendedmvs"
    got = load_scene(tmp_path)
    assert_cameras(got, np_views(s), np_Ks(s))
    assert_images(got, s)
    torch.testing.assert_close(got.depths, s.depths)
    assert (got.near, got.far) == (0.5, 30.0 + s.num_views - 1)


# ------------------------------------------------------------------------------------------ GTA-SfM

def test_gtasfm_extracted_round_trip(tmp_path):
    s = synthetic(per_view_k=True)
    c2w = np.linalg.inv(np_views(s))
    with open(tmp_path / "poses.txt", "w") as fp, open(tmp_path / "intrinsics.txt", "w") as fk:
        fp.write("# image_id pose4x4\n")
        fk.write("# image_id K3x3\n")
        for i in range(s.num_views):
            fp.write(f"{i:06d} " + " ".join(repr(float(x)) for x in c2w[i].ravel()) + "\n")
            fk.write(f"{i:06d} " + " ".join(repr(float(x)) for x in np_Ks(s)[i].ravel()) + "\n")
            save_png(tmp_path / "color" / f"{i:06d}.png", s.images[i])
            (tmp_path / "depth").mkdir(exist_ok=True)
            np.save(tmp_path / "depth" / f"{i:06d}.npy", s.depths[i].numpy())
    assert detect_format(tmp_path) == "gtasfm"
    got = load_scene(tmp_path)
    assert_cameras(got, np_views(s), np_Ks(s))
    assert_images(got, s)
    torch.testing.assert_close(got.depths, s.depths)


def test_gtasfm_hdf5_round_trip(tmp_path):
    h5py = pytest.importorskip("h5py")
    import io

    s = synthetic(per_view_k=True)
    c2w = np.linalg.inv(np_views(s))
    with h5py.File(tmp_path / "20190124_203632.hdf5", "w") as f:
        for i in range(s.num_views):
            buf = io.BytesIO()
            Image.fromarray((s.images[i].numpy() * 255 + 0.5).astype(np.uint8)).save(buf, format="PNG")
            f[f"image_{i}"] = np.frombuffer(buf.getvalue(), dtype=np.uint8)
            f[f"K_{i}"] = np_Ks(s)[i]
            f[f"pose_{i}"] = c2w[i]
            f[f"depth_{i}"] = s.depths[i].numpy()
    assert detect_format(tmp_path) == "gtasfm"
    got = load_scene(tmp_path)
    assert_cameras(got, np_views(s), np_Ks(s))
    assert_images(got, s)
    torch.testing.assert_close(got.depths, s.depths)


# ------------------------------------------------------------- images_N, *_present, outside paths

def _full_res_K(s: Scene, n: int) -> np.ndarray:
    """Intrinsics of an n-times larger original (pixel edges scale: K[:2] * n)."""
    K = np_Ks(s).copy()
    K[:, :2] *= n
    return K


def test_transforms_original_paths_with_images_n_only(tmp_path):
    """file_path names images/<f> at the original size (fl_x, w, h too) but only images_4/<f> exists
    (the nerfstudio / real/ convention): loaded with no options, K / 4; downscale.json may name the
    folder; downscale=8 resizes images_4 in memory."""
    s = synthetic()
    K4 = _full_res_K(s, 4)
    frames = [{"file_path": f"./images/f{i}.jpg", "transform_matrix": viewmat_to_opengl_c2w(np_views(s)[i]).tolist()}
              for i in range(s.num_views)]
    (tmp_path / "transforms.json").write_text(json.dumps(
        {"fl_x": K4[0, 0, 0], "fl_y": K4[0, 1, 1], "cx": K4[0, 0, 2], "cy": K4[0, 1, 2], "w": 4 * s.width,
         "h": 4 * s.height, "frames": frames}))
    for i in range(s.num_views):
        save_png(tmp_path / "images_4" / f"f{i}.png", s.images[i])  # another suffix: still found
    got = load_scene(tmp_path)
    assert_cameras(got, np_views(s), np_Ks(s))
    assert_images(got, s)
    half = load_scene(tmp_path, downscale=8)
    K8 = np_Ks(s).copy()
    K8[:, :2] *= 0.5
    assert_cameras(half, np_views(s), K8)
    with pytest.raises(DataFormatError, match="none of the 5 frames has an image file"), \
            pytest.warns(UserWarning, match=r"5 frame\(s\) skipped"):
        load_scene(tmp_path, downscale=2)  # only x4 images exist
    (tmp_path / "images_4").rename(tmp_path / "small")
    (tmp_path / "downscale.json").write_text(json.dumps({"factor": 4, "image_dir": "small"}))
    assert_cameras(load_scene(tmp_path), np_views(s), np_Ks(s))
    (tmp_path / "downscale.json").write_text(json.dumps({"factor": "four", "image_dir": "small"}))
    with pytest.raises(DataFormatError, match=r"downscale.json: 'factor' must be an integer"):
        load_scene(tmp_path)


def test_llff_and_transforms_prefer_present_subsets(tmp_path):
    """poses_bounds_present.npy / transforms_present.json (the frames whose images are here) win over
    the original files that list more frames."""
    s = synthetic(centred=True)
    keep = [0, 2, 3]
    llff = tmp_path / "llff"
    poses = viewmat_to_llff(np_views(s))
    hwf = np.broadcast_to(np.array([2 * s.height, 2 * s.width, 2 * float(s.cameras.Ks[0, 0, 0])])[None, :, None],
                          (s.num_views, 3, 1))
    arr = np.concatenate([np.concatenate([poses, hwf], 2).reshape(s.num_views, 15),
                          np.tile([[1.0, 30.0]], (s.num_views, 1))], 1)
    llff.mkdir()
    np.save(llff / "poses_bounds.npy", arr)
    for i in keep:
        save_png(llff / "images_2" / f"IMG_{i:04d}.png", s.images[i])
    with pytest.raises(DataFormatError, match="3 images but .*poses_bounds.npy has 5 poses"):
        load_scene(llff)
    np.save(llff / "poses_bounds_present.npy", arr[keep])
    assert detect_format(llff / "poses_bounds_present.npy") == "llff"
    assert_cameras(load_scene(llff), np_views(s)[keep], np_Ks(s)[keep])
    tf = write_nerfstudio(tmp_path / "tf", s)
    meta = json.loads((tf / "transforms.json").read_text())
    meta["frames"] = [meta["frames"][i] for i in keep]
    (tf / "transforms_present.json").write_text(json.dumps(meta))
    for i in set(range(s.num_views)) - set(keep):
        (tf / "images" / f"frame_{i:05d}.png").unlink()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "frames skipped" warning: the subset lists exactly these
        got = load_scene(tf)
    assert_cameras(got, np_views(s)[keep], np_Ks(s)[keep])


@pytest.mark.parametrize("key,value", [("file_path", "../outside.png"), ("file_path", "images/../../outside.png"),
                                       ("file_path", "ABS"), ("mask_path", "../mask.png")])
def test_transforms_paths_outside_the_scene_are_refused(tmp_path, key, value):
    """Issue 12 (10a): a file_path / mask_path that is absolute or climbs out with '..' is refused with
    a clear error unless allow_outside_paths=True."""
    s = synthetic(views=2)
    scene = write_nerfstudio(tmp_path / "scene", s)
    save_png(tmp_path / "outside.png", s.images[0])
    save_png(tmp_path / "mask.png", np.ones((s.height, s.width)))
    meta = json.loads((scene / "transforms.json").read_text())
    meta["frames"][1][key] = str(tmp_path / "outside.png") if value == "ABS" else value
    (scene / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=rf"transforms.json: frame 1: {key} .* points outside the scene "
                                              rf"folder .*allow_outside_paths=True"):
        load_scene(scene)
    got = load_scene(scene, allow_outside_paths=True)
    assert got.num_views == 2
    if key == "file_path":
        assert_images(got, replace(s, images=s.images[[0, 0]]))


# ------------------------------------------------------------------------------------------ Strecha

def write_strecha(root: Path, s: Scene, n: int = 4) -> None:
    """<image>.camera files in gt_dense_cameras/ for an n-times larger original (integer pixel
    centres), images in images_n/."""
    from foresplat.data.loaders.conventions import viewmat_to_strecha

    K = half_pixel_to_integer_centre(_full_res_K(s, n))
    for i in range(s.num_views):
        R, C = viewmat_to_strecha(np_views(s)[i])
        rows = [K[i, 0], K[i, 1], K[i, 2], np.zeros(3), R[0], R[1], R[2], C]
        text = "".join(" ".join(repr(float(x)) for x in r) + " \n" for r in rows) + f"{n * s.width} {n * s.height}\n"
        (root / "gt_dense_cameras").mkdir(parents=True, exist_ok=True)
        (root / "gt_dense_cameras" / f"{i:04d}.jpg.camera").write_text(text)
        save_png(root / f"images_{n}" / f"{i:04d}.png", s.images[i])  # converted to png: matched by stem


def test_strecha_round_trip(tmp_path):
    s = synthetic(per_view_k=True)
    write_strecha(tmp_path, s)
    assert detect_format(tmp_path) == "strecha"
    assert detect_format(tmp_path / "gt_dense_cameras" / "0000.jpg.camera") == "strecha"
    assert load_scene(tmp_path / "gt_dense_cameras" / "0000.jpg.camera").num_views == s.num_views
    got = load_scene(tmp_path)
    assert_cameras(got, np_views(s), np_Ks(s))
    assert_images(got, s)
    assert 0 < got.near < got.far
    two = load_scene(tmp_path, max_views=2)
    assert_cameras(two, np_views(s)[[0, 4]], np_Ks(s)[[0, 4]])


@pytest.mark.parametrize("edit,expect", [
    (lambda t: t.splitlines()[0] + "\n", r"expected 9 non-empty lines"),
    (lambda t: t.replace(t.split()[0], "abc", 1), r"line 1: expected 3 numbers \(K row 1\), got non-numeric 'abc'"),
    (lambda t: t.replace(t.split()[0], "nan", 1), r"line 1: expected 3 finite numbers \(K row 1\), got NaN"),
    (lambda t: t.replace(" \n", " 7 \n", 1), r"line 1: expected 3 numbers \(K row 1\), got 4"),
    (lambda t: "\n".join(t.splitlines()[:8]) + "\n64\n", r"line 9: expected 2 numbers \(width height\), got 1"),
    (lambda t: t.replace("0.0 0.0 0.0", "0.1 0.0 0.0", 1), r"line 4: expected zero distortion"),
    (lambda t: "\n".join(ln if i != 4 else "2 0 0" for i, ln in enumerate(t.splitlines())) + "\n",
     r"lines 5-7 \(R\): expected a rotation matrix"),
    (lambda t: "", r"expected 9 non-empty lines"),
])
def test_strecha_broken_files_fail_clearly(tmp_path, edit, expect):
    s = synthetic(views=2)
    write_strecha(tmp_path, s)
    f = tmp_path / "gt_dense_cameras" / "0001.jpg.camera"
    f.write_text(edit(f.read_text()))
    with pytest.raises(DataFormatError, match=rf"0001.jpg.camera: {expect}"):
        load_scene(tmp_path)


def test_strecha_binary_garbage_fails_clearly(tmp_path):
    s = synthetic(views=2)
    write_strecha(tmp_path, s)
    f = tmp_path / "gt_dense_cameras" / "0000.jpg.camera"
    f.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)))
    with pytest.raises(DataFormatError, match=r"0000.jpg.camera: "):
        load_scene(tmp_path)


# --------------------------------------------------------------------------------------- Middlebury

def write_middlebury(root: Path, s: Scene, n: int = 2, name: str = "obj", keep: list[int] | None = None) -> None:
    """<name>_par.txt for an n-times larger original (integer pixel centres), images in images_n/,
    optionally <name>_par_present.txt listing only `keep`, and a README.txt with a bounding box."""
    K = half_pixel_to_integer_centre(_full_res_K(s, n))
    lines = []
    for i in range(s.num_views):
        v = np_views(s)[i]
        vals = [*K[i].ravel(), *v[:3, :3].ravel(), *v[:3, 3]]
        lines.append(f"{name}{i:04d}.png " + " ".join(repr(float(x)) for x in vals))
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}_par.txt").write_text(f"{len(lines)}\n" + "\n".join(lines) + "\n")
    if keep is not None:
        (root / f"{name}_par_present.txt").write_text(f"{len(keep)}\n" + "\n".join(lines[i] for i in keep) + "\n")
    for i in (range(s.num_views) if keep is None else keep):
        save_png(root / f"images_{n}" / f"{name}{i:04d}.png", s.images[i])
    c = camera_centres(np_views(s)).mean(0) + 3.0 * np_views(s)[:, 2, :3].mean(0)  # ahead of the cameras
    lo, hi = c - 0.5, c + 0.5
    (root / "README.txt").write_text("The (tight) bounding box for the obj model is\n"
                                     f"({lo[0]} {lo[1]} {lo[2]})\n({hi[0]} {hi[1]} {hi[2]})\n")


def test_middlebury_round_trip_with_present_subset_and_box_bounds(tmp_path):
    s = synthetic(per_view_k=True)
    keep = [0, 1, 3]
    write_middlebury(tmp_path, s, keep=keep)
    assert detect_format(tmp_path) == "middlebury"
    got = load_scene(tmp_path)
    assert_cameras(got, np_views(s)[keep], np_Ks(s)[keep])
    assert_images(got, s.subset(keep))
    from foresplat.data.loaders.middlebury import read_readme_box

    box = read_readme_box(tmp_path)
    corners = np.array([[box[i, 0], box[j, 1], box[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    z = s.subset(keep).cameras.project(torch.from_numpy(corners).float())[1]  # [V, 8] corner depths
    assert float(z.min()) > 0
    assert (got.near, got.far) == pytest.approx((0.8 * float(z.min()), 1.2 * float(z.max())), rel=1e-4)
    (tmp_path / "obj_par_present.txt").unlink()
    with pytest.warns(UserWarning, match=r"2 frame\(s\) skipped"):
        assert load_scene(tmp_path).num_views == 3


@pytest.mark.parametrize("edit,expect", [
    (lambda ls: ["7"] + ls[1:], r"line 1 says 7 images but 5 camera lines follow"),
    (lambda ls: ["five"] + ls[1:], r"line 1: expected the number of images"),
    (lambda ls: ls[:3] + [" ".join(ls[3].split()[:10])] + ls[4:], r"line 4: expected 'imgname k11..k33 r11..r33 t1 t2 t3' \(22 fields\), got 10"),
    (lambda ls: ls[:2] + [ls[2].replace(ls[2].split()[5], "x1", 1)] + ls[3:], r"line 3: expected 21 numbers .* non-numeric 'x1'"),
    (lambda ls: ls[:2] + [ls[2].rsplit(" ", 1)[0] + " nan"] + ls[3:], r"line 3: expected 21 finite numbers"),
    (lambda ls: ls[:2] + [" ".join(ls[2].split()[:10] + ["3"] + ls[2].split()[11:])] + ls[3:],
     r"line 3: expected a rotation matrix"),
    (lambda ls: [], r"empty file"),
])
def test_middlebury_broken_files_fail_clearly(tmp_path, edit, expect):
    s = synthetic()
    write_middlebury(tmp_path, s)
    f = tmp_path / "obj_par.txt"
    f.write_text("\n".join(edit(f.read_text().splitlines())) + "\n")
    with pytest.raises(DataFormatError, match=rf"obj_par.txt: {expect}"):
        load_scene(tmp_path)


def _write_images_bin(path: Path, records: list[tuple[int, np.ndarray, np.ndarray, int, str, int]]) -> bytes:
    """COLMAP images.bin: (image_id, qvec wxyz, tvec, camera_id, name, number of 2D points)."""
    out = [struct.pack("<Q", len(records))]
    for iid, q, t, cid, name, npts in records:
        out.append(struct.pack("<i4d3di", iid, *q, *t, cid) + name.encode() + b"\x00" + struct.pack("<Q", npts))
        out.append(b"".join(struct.pack("<ddq", 1.5 * k, 2.5 * k, -1) for k in range(npts)))
    data = b"".join(out)
    path.write_bytes(data)
    return data


def test_colmap_images_readers_and_their_errors(tmp_path):
    """foresplat's images.bin / images.txt readers (no pycolmap): values, 2D points, and one clear
    error for each kind of damage."""
    from foresplat.data.loaders.colmap_io import read_images_binary, read_images_text, read_model

    q = rotmat_to_quat(np.eye(3))
    recs = [(1, q, np.array([0.1, 0.2, 0.3]), 1, "a.png", 3), (7, q, np.zeros(3), 1, "sub/b.png", 0)]
    p = tmp_path / "images.bin"
    data = _write_images_bin(p, recs)
    got = read_images_binary(p, points2d=True)
    assert sorted(got) == [1, 7] and got[7].name == "sub/b.png"
    np.testing.assert_allclose(got[1].tvec, [0.1, 0.2, 0.3])
    np.testing.assert_allclose(got[1].xys, [[0, 0], [1.5, 2.5], [3.0, 5.0]])
    assert got[1].point3d_ids.tolist() == [-1, -1, -1]
    cases = {
        "empty": (b"", r"truncated images.bin \(0 bytes; expected"),
        "count": (struct.pack("<Q", 10**12) + data[8:], r"header says 1000000000000 images"),
        "cut": (data[:8 + 64 + 3], r"header says 2 images but the file \(75 bytes\) holds at most 0"),
        "name": (struct.pack("<Q", 1) + data[8:8 + 64] + b"x" * 100, r"image 0 of 1: no NUL-terminated name"),
        "points": (struct.pack("<Q", 1) + data[8:8 + 64 + 6] + struct.pack("<Q", 2**60) + bytes(24),
                   r"image 0 of 1 \('a.png'\) says 1152921504606846976 2D points"),
        "tail": (data + b"\x00", r"1 unexpected trailing bytes"),
    }
    for case, (raw, msg) in cases.items():
        p.write_bytes(raw)
        with pytest.raises(DataFormatError, match=rf"images.bin: .*{msg}"):
            read_images_binary(p)
    bad_q = [(1, np.zeros(4), np.zeros(3), 1, "a.png", 0)]
    _write_images_bin(p, bad_q)
    with pytest.raises(DataFormatError, match=r"images.bin: image 1 \('a.png'\): expected a unit quaternion"):
        read_images_binary(p)
    t = tmp_path / "images.txt"
    t.write_text("# header\n1 1 0 0 0 0 0 0 1 a b.png\n\n2 1 0 0 0 nan 0 0 1 c.png\n1 2 -1\n")
    with pytest.raises(DataFormatError, match=r"images.txt: line 4 \(image 2\): pose must be finite"):
        read_images_text(t)
    t.write_text("1 1 0 0 0 0 0 0 1 a b.png\n\n")
    assert read_images_text(t)[1].name == "a b.png"
    t.write_text("1 1 0 0 zero 0 0 0 1 a.png\n\n")
    with pytest.raises(DataFormatError, match=r"images.txt:1: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'"):
        read_images_text(t)
    model = tmp_path / "model"
    model.mkdir()
    (model / "cameras.txt").write_text("2 PINHOLE 8 6 10 10 4 3\n")
    (model / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n")
    with pytest.raises(DataFormatError, match=r"images.txt: image 1 \('a.png'\) uses camera 1, which cameras.txt "
                                              r"does not define"):
        read_model(model)


def test_colmap_image_names_outside_the_images_folder_are_refused(tmp_path):
    s = synthetic(views=2)
    K = np_Ks(s)[0]
    model = tmp_path / "sparse" / "0"
    model.mkdir(parents=True)
    (model / "cameras.txt").write_text(f"1 PINHOLE {s.width} {s.height} {K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]}\n")
    lines = []
    for i, name in enumerate(["v0.png", "../v1.png"]):
        v = np_views(s)[i]
        lines += [f"{i + 1} {' '.join(map(repr, rotmat_to_quat(v[:3, :3]).tolist()))} "
                  f"{' '.join(map(repr, v[:3, 3].tolist()))} 1 {name}", ""]
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    save_png(tmp_path / "images" / "v0.png", s.images[0])
    save_png(tmp_path / "v1.png", s.images[1])
    with pytest.raises(DataFormatError, match=r"name '../v1.png' points outside the images folder"):
        load_scene(tmp_path)
    assert load_scene(tmp_path, allow_outside_paths=True).num_views == 2


def test_transforms_images_n_keeps_sub_paths_where_names_collide(tmp_path):
    """train/0001 and test/0001 downscaled into images_2/train/0001.png and images_2/test/0001.png."""
    s = synthetic(views=2)
    K2 = _full_res_K(s, 2)
    for i, split in enumerate(("train", "test")):
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps(
            {"fl_x": K2[0, 0, 0], "fl_y": K2[0, 1, 1], "cx": K2[0, 0, 2], "cy": K2[0, 1, 2], "w": 2 * s.width,
             "h": 2 * s.height, "frames": [{"file_path": f"./{split}/0001",
                                            "transform_matrix": viewmat_to_opengl_c2w(np_views(s)[i]).tolist()}]}))
        save_png(tmp_path / "images_2" / split / "0001.png", s.images[i])
    save_png(tmp_path / "images_2" / "0001.png", np.zeros((s.height, s.width, 3)))  # a decoy flat name
    got = load_scene(tmp_path)
    assert_cameras(got, np_views(s), np_Ks(s))
    assert_images(got, s)
