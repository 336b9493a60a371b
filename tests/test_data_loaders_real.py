"""The 18 real scenes of ../shared/data/real, each loaded with no options and checked against its
own files: format, view and pose counts, image size and intrinsics against the original resolution
(SOURCE.txt, the pose files read here independently), cameras facing a common point, depth bounds,
and reprojection (COLMAP keypoints, Middlebury's stated bounding box and silhouettes); the Strecha
rotation convention; and corrupt COLMAP models failing fast in bounded memory (issue 12)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from foresplat.data import detect_format, load_scene
from foresplat.data.loaders.geometry import camera_centres, optical_axes_focus, optical_axis_distances

REAL_SCENES = (
    "capture_caesar", "capture_lambkin", "capture_mesh360", "capture_minicar", "capture_table", "dtu_scan37",
    "middlebury_dino", "middlebury_templering", "nerd_blowtorch", "nerd_duckqueen", "nerd_ethiopianhead",
    "nerd_maryrose", "nerd_moldgoldcape", "nerd_motherchild", "nerd_statueofliberty", "strecha_castleP30",
    "strecha_entryP10", "strecha_herzjesusP25")


@pytest.fixture(scope="module")
def real(shared_data) -> Path:
    root = shared_data / "real"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    return root


def _meta(scene: Path) -> dict:
    return json.loads((scene / "downscale.json").read_text())


def _original_size(scene: Path) -> tuple[int, int]:
    m = re.search(r"original size\(s\) \[\((\d+), (\d+)\)\]", (scene / "SOURCE.txt").read_text())
    assert m, scene
    return int(m.group(1)), int(m.group(2))


def _original_focal(scene: Path, fmt: str) -> float | None:
    """fx of the first loaded view at the original resolution, read from the pose files here (not
    through the loaders); None where the format needs a decomposition (IDR) or a binary reader."""
    if fmt == "transforms":
        files = [scene / "transforms_present.json", scene / "transforms.json", scene / "transforms_train.json"]
        return float(json.loads(next(f for f in files if f.is_file()).read_text())["fl_x"])
    if fmt == "llff":
        pb = scene / "poses_bounds_present.npy"
        pb = pb if pb.is_file() else scene / "poses_bounds.npy"
        return float(np.load(pb)[0, 14])
    if fmt == "strecha":
        return float(next(iter(sorted((scene / "gt_dense_cameras").glob("*.camera")))).read_text().split()[0])
    if fmt == "middlebury":
        par = next(scene.glob("*_par_present.txt"))
        return float(par.read_text().splitlines()[1].split()[1])
    return None


def project(viewmats: np.ndarray, Ks: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points [P, 3] -> (uv [V, P, 2], z [V, P])."""
    cam = np.einsum("vij,pj->vpi", viewmats[:, :3, :3], X) + viewmats[:, None, :3, 3]
    uvw = np.einsum("vij,vpj->vpi", Ks, cam)
    return uvw[..., :2] / uvw[..., 2:], cam[..., 2]


@pytest.mark.parametrize("name", REAL_SCENES)
def test_real_scene_loads_with_no_options(real, name):
    scene = real / name
    meta = _meta(scene)
    fmt = detect_format(scene)
    assert fmt == meta["format"]
    s = load_scene(scene)
    N = meta["factor"]
    # every image present is a view, with its own pose
    assert s.num_views == meta["n_images"] == len(list((scene / meta["image_dir"]).iterdir()))
    assert s.cameras.num == s.num_views
    # image size and intrinsics follow the 1/N downscale of the original resolution
    W0, H0 = _original_size(scene)
    assert (s.width * N, s.height * N) == (W0, H0)
    K = s.cameras.Ks.double().numpy()
    f0 = _original_focal(scene, fmt)
    if f0 is not None:
        assert K[0, 0, 0] * N == pytest.approx(f0, rel=1e-5)
    fov_x = np.degrees(2 * np.arctan(0.5 * s.width / K[:, 0, 0]))
    assert ((fov_x > 5) & (fov_x < 120)).all(), fov_x
    assert (np.abs(K[:, 0, 2] / s.width - 0.5) < 0.1).all() and (np.abs(K[:, 1, 2] / s.height - 0.5) < 0.1).all()
    # the cameras face a common point: it lies in front of every camera, near every optical axis,
    # and projects inside (almost) every image
    v = s.cameras.viewmats.double().numpy()
    f = optical_axes_focus(v)
    D = np.linalg.norm(camera_centres(v) - f, axis=-1)
    uv, z = project(v, K, f[None])
    assert z.min() > 0.3 * np.median(D), (z.min(), np.median(D))
    assert np.median(optical_axis_distances(v, f) / D) < 0.12
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= s.width) & (uv[..., 1] >= 0) & (uv[..., 1] <= s.height)
    assert inside.mean() > 0.95
    # bounds: positive, and the common point's depth lies inside them in every view
    assert 0 < s.near < z.min() and z.max() < s.far
    if s.points is not None:  # most sparse points in front of the cameras lie inside [near, far]
        _, zp = project(v, K, s.points.double().numpy())
        front = zp[zp > 0]
        assert ((front > s.near) & (front < s.far)).mean() > 0.95


@pytest.mark.parametrize("name", ["capture_table", "capture_mesh360"])
def test_colmap_keypoints_reproject_on_downscaled_images(real, name):
    """Each COLMAP keypoint (stored at the original resolution, distorted) and its 3D point projected
    with the loaded camera (images_N, K / N, undistorted) agree to a fraction of a pixel."""
    from foresplat.data.loaders.colmap_io import read_cameras_binary, read_images_binary, read_points3d_binary
    from foresplat.data.loaders.distortion import colmap_camera_to_pinhole, undistort_points

    scene = real / name
    N = _meta(scene)["factor"]
    s = load_scene(scene)
    model = scene / "sparse" / "0"
    cams = read_cameras_binary(model / "cameras.bin")
    images = sorted(read_images_binary(model / "images.bin", points2d=True).values(), key=lambda im: im.name)
    pts = read_points3d_binary(model / "points3D.bin")
    xyz_of = dict(zip(pts.ids.tolist(), pts.xyz))
    assert len(images) == s.num_views
    errs = []
    for i in np.linspace(0, len(images) - 1, 8).round().astype(int):
        im = images[i]
        keep = im.point3d_ids >= 0
        X = np.stack([xyz_of[j] for j in im.point3d_ids[keep].tolist()])
        fx, fy, cx, cy, dist = colmap_camera_to_pinhole(cams[im.camera_id].model, cams[im.camera_id].params)
        xd, yd = (im.xys[keep, 0] - cx) / fx, (im.xys[keep, 1] - cy) / fy
        xu, yu = undistort_points(xd, yd, dist)[:2] if dist is not None else (xd, yd)
        want = np.stack([fx * xu + cx, fy * yu + cy], -1) / N
        uv, z = project(s.cameras.viewmats[i:i + 1].double().numpy(), s.cameras.Ks[i:i + 1].double().numpy(), X)
        assert (z > 0).all()
        errs.append(np.linalg.norm(uv[0] - want, axis=-1))
    err = np.concatenate(errs)
    assert np.median(err) < 0.5 and np.percentile(err, 90) < 1.5, (np.median(err), np.percentile(err, 90))


def test_colmap_reader_matches_pycolmap(real):
    """foresplat's own COLMAP reader and pycolmap agree on a real model (poses, intrinsics, points)."""
    pycolmap = pytest.importorskip("pycolmap")
    from foresplat.data.loaders.colmap_io import read_model
    from foresplat.data.loaders.conventions import colmap_to_viewmat

    model = real / "capture_table" / "sparse" / "0"
    ours = read_model(model)
    rec = pycolmap.Reconstruction(str(model))
    assert set(ours.images) == set(rec.images) and len(ours.points.xyz) == rec.num_points3D()
    for iid, im in rec.images.items():
        cfw = im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world
        np.testing.assert_allclose(colmap_to_viewmat(ours.images[iid].qvec, ours.images[iid].tvec)[0, :3],
                                   np.asarray(cfw.matrix()), atol=1e-9)
        assert ours.images[iid].name == im.name
    for cid, cam in rec.cameras.items():
        np.testing.assert_allclose(ours.cameras[cid].params, np.asarray(cam.params))
    xyz = np.array([p.xyz for p in rec.points3D.values()])
    np.testing.assert_allclose(np.sort(ours.points.xyz, axis=0), np.sort(xyz, axis=0))


@pytest.mark.parametrize("name", ["middlebury_dino", "middlebury_templering"])
def test_middlebury_bounding_box_projects_onto_the_object(real, name):
    """The object's bounding box stated in README.txt projects in front of every camera, centred
    inside every image, and it covers the object (bright pixels on the black background)."""
    from foresplat.data.loaders.middlebury import read_readme_box

    s = load_scene(real / name)
    box = read_readme_box(real / name)
    assert box is not None
    corners = np.array([[box[i, 0], box[j, 1], box[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    uv, z = project(s.cameras.viewmats.double().numpy(), s.cameras.Ks.double().numpy(), corners)
    assert (z > 0).all() and s.near < z.min() and z.max() < s.far
    lo, hi = uv.min(1), uv.max(1)  # [V, 2] the box's image rectangle
    centre = uv.mean(1)  # the object reaches out of some views (README), its centre does not
    assert ((centre >= 0) & (centre <= [s.width, s.height])).all()
    bright = s.images.numpy().max(-1) > 0.25  # [V, H, W] object pixels (the background is black)
    vv, uu = np.mgrid[0:s.height, 0:s.width] + 0.5
    covered = []
    for i in range(s.num_views):
        inside = (uu >= lo[i, 0]) & (uu <= hi[i, 0]) & (vv >= lo[i, 1]) & (vv <= hi[i, 1])
        covered.append(bright[i][inside].sum() / max(bright[i].sum(), 1))
        assert inside.mean() < 0.8  # the box is not the whole image: the check can fail
    assert np.median(covered) > 0.9, covered


def test_strecha_rotation_is_camera_to_world(real):
    """README: x_cam = R^T (X - C) with R camera-to-world. Read that way the optical axes of every
    Strecha scene meet in front of all cameras; read the other way (R world-to-camera) they do not."""
    from foresplat.data.loaders.strecha import read_strecha_camera

    for name in ("strecha_entryP10", "strecha_castleP30", "strecha_herzjesusP25"):
        files = sorted((real / name / "gt_dense_cameras").glob("*.camera"))
        views = np.stack([read_strecha_camera(f)[1] for f in files])
        R = np.stack([np.array([float(x) for x in f.read_text().split()[12:21]]).reshape(3, 3) for f in files])
        C = np.stack([np.array([float(x) for x in f.read_text().split()[21:24]]) for f in files])
        np.testing.assert_allclose(views[:, :3, :3], np.swapaxes(R, 1, 2))  # R^T
        np.testing.assert_allclose(camera_centres(views), C, atol=1e-4)  # R is written to 6 digits
        wrong = np.tile(np.eye(4), (len(files), 1, 1))
        wrong[:, :3, :3] = R
        wrong[:, :3, 3] = -np.einsum("nij,nj->ni", R, C)
        for v, ok in ((views, True), (wrong, False)):
            f = optical_axes_focus(v)
            z = np.einsum("nj,nj->n", v[:, 2, :3], f - C)
            D = np.linalg.norm(C - f, axis=-1)
            faces = z.min() > 0.3 * np.median(D) and np.median(optical_axis_distances(v, f) / D) < 0.12
            assert faces == ok, (name, ok, z.min(), np.median(D))


def test_lambkin_reads_every_split_once(real):
    """transforms_train (88) + transforms_test (22) + transforms_val (= test): 110 distinct views."""
    s = load_scene(real / "capture_lambkin", max_views=1000, points=False)
    assert s.num_views == 110
    assert load_scene(real / "capture_lambkin", split="train").num_views == 88


# --------------------------------------------------------------- corrupt COLMAP models (issue 12)

_CASES_SCRIPT = textwrap.dedent("""
    import json, shutil, sys, time
    from pathlib import Path
    from foresplat.data import load_scene
    src, work = Path(sys.argv[1]), Path(sys.argv[2])
    out = []
    rng = __import__("random").Random(0)
    for fname in ("cameras.bin", "images.bin", "points3D.bin"):
        good = (src / "sparse" / "0" / fname).read_bytes()
        for case, data in (("random", bytes(rng.getrandbits(8) for _ in range(4096))), ("empty", b""),
                           ("truncated", good[: len(good) * 2 // 3])):
            scene = work / f"{fname}-{case}"
            shutil.copytree(src / "sparse", scene / "sparse")
            (scene / "images_4").symlink_to(src / "images_4")
            (scene / "sparse" / "0" / fname).write_bytes(data)
            t = time.time()
            try:
                load_scene(scene, max_views=2)
                res = ("ok", "")
            except Exception as e:
                res = (type(e).__name__, str(e))
            out.append({"file": fname, "case": case, "error": res[0], "message": res[1],
                        "seconds": time.time() - t})
    print(json.dumps(out))
""")


def test_corrupt_colmap_model_fails_fast_in_bounded_memory(real, tmp_path):
    """Random bytes, 0 bytes or a truncated copy of cameras.bin / images.bin / points3D.bin: one clear
    DataFormatError naming the file, within seconds, under a 3 GB address-space limit (pycolmap
    grew to ~17 GB on such files and, under the limit, failed with std::bad_alloc naming no file)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    proc = subprocess.run([sys.executable, "-c", _CASES_SCRIPT, str(real / "capture_table"), str(tmp_path)],
                          preexec_fn=limit, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cases = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(cases) == 9
    for c in cases:
        assert c["error"] == "DataFormatError", c
        msg = c["message"]
        assert "\n" not in msg and c["file"] in msg and len(msg) < 300, c
        assert re.search(r"expected|truncated|corrupt|header says", msg), c
        assert c["seconds"] < 5, c


# ------------------------------------------------------------------------------ scene catalog

def _tiny_scene(folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(folder / "f0.png")
    (folder / "transforms.json").write_text(json.dumps(
        {"fl_x": 10.0, "w": 8, "h": 6, "frames": [{"file_path": "f0.png", "transform_matrix": np.eye(4).tolist()}]}))


def test_discover_scenes_handles_scenes_containers_and_nested_containers(tmp_path):
    from foresplat.data.catalog import (HELDOUT_REAL_SCENES, VISIBLE_EVAL_SCENES, discover_scenes,
                                        evaluation_scenes, training_scenes)

    for name in ("llff_fern", "other_a", "real/capture_caesar", "real/other_b", "real/deeper/too_deep_c",
                 ".hidden/x"):
        _tiny_scene(tmp_path / name)
    (tmp_path / "empty").mkdir()
    _tiny_scene(tmp_path / "other_a" / "sub")  # inside a scene: not searched
    found = discover_scenes(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "llff_fern", "other_a", "real/capture_caesar", "real/other_b"]
    assert discover_scenes(tmp_path / "real" / "other_b") == [tmp_path / "real" / "other_b"]
    assert discover_scenes(tmp_path, max_depth=3)[-1] == tmp_path / "real" / "other_b"
    assert tmp_path / "real" / "deeper" / "too_deep_c" in discover_scenes(tmp_path, max_depth=3)
    assert [p.name for p in training_scenes(tmp_path)] == ["other_a", "other_b"]
    assert [p.name for p in evaluation_scenes(tmp_path)] == ["llff_fern", "capture_caesar"]
    assert not set(VISIBLE_EVAL_SCENES) & set(HELDOUT_REAL_SCENES)
    with pytest.raises(FileNotFoundError, match="nope"):
        discover_scenes(tmp_path / "nope")


def test_catalog_on_the_shared_data(shared_data):
    """../shared/data: 3 scenes + real/ with 18; real/ itself is never a scene; the evaluation sources
    (used by `foresplat demo` and `foresplat eval`) are the visible + held-out scenes only."""
    from foresplat.data.catalog import (HELDOUT_REAL_SCENES, VISIBLE_EVAL_SCENES, discover_scenes,
                                        evaluation_scenes, training_scenes)
    from foresplat.evaluate.sources import path_sources

    if not (shared_data / "real").is_dir():
        pytest.skip("no real/ folder")
    found = discover_scenes(shared_data)
    assert len(found) == 21 and shared_data / "real" not in found
    assert {p.name for p in found} == set(REAL_SCENES) | set(VISIBLE_EVAL_SCENES)
    train = {p.name for p in training_scenes(shared_data)}
    assert len(train) == 14 and not train & (set(VISIBLE_EVAL_SCENES) | set(HELDOUT_REAL_SCENES))
    assert [p.name for p in evaluation_scenes(shared_data)] == [*VISIBLE_EVAL_SCENES, *HELDOUT_REAL_SCENES]
    assert [s.name for s in path_sources(shared_data, which="evaluation")] == [
        *VISIBLE_EVAL_SCENES, *HELDOUT_REAL_SCENES]
    assert "real" not in [s.name for s in path_sources(shared_data)]


@pytest.mark.parametrize("name", ["strecha_entryP10", "middlebury_templering", "nerd_duckqueen", "capture_minicar"])
def test_cli_data_inspect_real_scene(real, name, capsys):
    from foresplat.cli import main

    assert main(["data", "inspect", str(real / name)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"format\s+{_meta(real / name)['format']}", out)
    assert re.search(rf"views\s+{_meta(real / name)['n_images']}\b", out)
