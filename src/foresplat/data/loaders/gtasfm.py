"""GTA-SfM sequences (Wang & Shen 2020, "Flow-Motion and Depth Network"), as far as public code shows.

Released format: one HDF5 file per sequence (e.g. 20190124_203632.hdf5) whose keys come in fours:
    image_i   encoded image bytes (JPEG/PNG; decode with PIL)
    K_i       3x3 pixel intrinsics (principal point at (W/2, H/2): foresplat's convention)
    pose_i    4x4 camera-to-world, OpenCV axes (z forward; relative poses are inv(pose_a) @ pose_b)
    depth_i   [H, W] float z-depth
(authors' read.py; the convention of pose_i follows multi_view_stereonet's GTA-SfM loader, which
composes poses as camera-to-world and takes the viewing direction from pose[:3, 2]). Reading
.hdf5 needs h5py (optional dependency, imported lazily). The extracted layout of the same data is
read without h5py: color/NNNNNN.jpg, depth/NNNNNN.npy, poses.txt and intrinsics.txt ("# ..."
header, then per line an image id followed by the 16 pose / 9 K values, row-major).
The path may be an .hdf5 file, a folder of them (LoadOptions.sequence picks one) or an
extracted sequence folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from foresplat.data.loaders.common import (DataFormatError, FrameSpec, LoadOptions, list_images,
                                           load_frames, make_scene, pick_views, read_npy, warn_skipped)
from foresplat.data.loaders.conventions import c2w_to_viewmat
from foresplat.data.scene import Scene


def read_id_matrix_file(path: Path, n: int) -> dict[int, np.ndarray]:
    """poses.txt / intrinsics.txt: lines 'ID v1 .. vn' ('#' comments) -> {id: [n] float64}."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    out: dict[int, np.ndarray] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        try:
            key, vals = int(tok[0]), np.array([float(t) for t in tok[1:]], dtype=np.float64)
        except (ValueError, IndexError):
            raise DataFormatError(f"{path}:{lineno}: expected 'ID' and {n} numbers, got {line[:80]!r}") from None
        if vals.size != n or not np.isfinite(vals).all():
            raise DataFormatError(f"{path}:{lineno}: expected {n} finite numbers after the id, got {vals.size}")
        out[key] = vals
    if not out:
        raise DataFormatError(f"{path}: no entries")
    return out


def _check_pose(pose: np.ndarray, label: str) -> np.ndarray:
    if pose.shape != (4, 4) or not np.isfinite(pose).all() or not np.allclose(pose[3], [0, 0, 0, 1], atol=1e-6):
        raise DataFormatError(f"{label}: pose must be a finite 4x4 matrix with last row 0 0 0 1")
    return c2w_to_viewmat(pose)


def _load_extracted(path: Path, opts: LoadOptions) -> tuple[list[FrameSpec], list[str]]:
    poses = read_id_matrix_file(path / "poses.txt", 16)
    Ks = read_id_matrix_file(path / "intrinsics.txt", 9)
    images = list_images(path / (opts.images_dir or "color"))
    by_id = {}
    for p in images:
        if re.fullmatch(r"\d+", p.stem):
            by_id[int(p.stem)] = p
    ids = sorted(poses)
    if set(ids) != set(Ks):
        raise DataFormatError(f"{path}: poses.txt has {len(ids)} ids but intrinsics.txt has {len(Ks)} "
                              f"(different image ids)")
    frames, skipped = [], []
    for i in pick_views(len(ids), opts.max_views):
        key = ids[i]
        img = by_id.get(key)
        if img is None:
            skipped.append(f"{path / 'color'}/{key:06d}.jpg")
            continue
        dp = path / "depth" / f"{img.stem}.npy"
        frames.append(FrameSpec(image=img, label=str(img),
                                viewmat=_check_pose(poses[key].reshape(4, 4), f"{path / 'poses.txt'} id {key}"),
                                K=Ks[key].reshape(3, 3),
                                depth=(lambda dp=dp: read_npy(dp)) if dp.is_file() else None))
    return frames, skipped


def _load_hdf5(path: Path, opts: LoadOptions) -> list[FrameSpec]:
    try:
        import h5py
    except ImportError:
        raise ImportError(f"{path}: reading GTA-SfM .hdf5 files needs h5py (pip install h5py), or extract "
                          f"the sequence to color/, depth/, poses.txt, intrinsics.txt first") from None
    try:
        f = h5py.File(path, "r")
    except Exception as e:
        raise DataFormatError(f"{path}: cannot open as HDF5 ({type(e).__name__}: {e})") from None
    with f:
        idx = sorted(int(k[6:]) for k in f.keys() if re.fullmatch(r"image_\d+", k))
        if not idx:
            raise DataFormatError(f"{path}: no image_<i> datasets")
        if idx != list(range(len(idx))):
            raise DataFormatError(f"{path}: image indices are not 0..{len(idx) - 1}")
        frames = []
        for i in pick_views(len(idx), opts.max_views):
            for key in (f"K_{i}", f"pose_{i}"):
                if key not in f:
                    raise DataFormatError(f"{path}: {key} missing (every image_i needs K_i and pose_i)")
            label = f"{path}:image_{i}"
            data = bytes(np.asarray(f[f"image_{i}"][()]).tobytes())
            K = np.asarray(f[f"K_{i}"][()], dtype=np.float64)
            if K.shape != (3, 3) or not np.isfinite(K).all():
                raise DataFormatError(f"{path}: K_{i} must be a finite 3x3 matrix, got {list(K.shape)}")
            depth = None
            if opts.depths and f"depth_{i}" in f:
                d = np.asarray(f[f"depth_{i}"][()], dtype=np.float32)
                depth = lambda d=d: d  # noqa: E731
            frames.append(FrameSpec(image=lambda data=data: data, label=label,
                                    viewmat=_check_pose(np.asarray(f[f"pose_{i}"][()], dtype=np.float64),
                                                        f"{path}:pose_{i}"),
                                    K=K, depth=depth))
    return frames


def load_gtasfm(path: Path, opts: LoadOptions) -> Scene:
    """Loads one GTA-SfM sequence (see module docstring) as a Scene."""
    skipped: list[str] = []
    if path.is_file():
        frames, name = _load_hdf5(path, opts), path.stem
    elif (path / "poses.txt").is_file():
        (frames, skipped), name = _load_extracted(path, opts), path.name
    else:
        files = sorted(path.glob("*.hdf5"))
        if opts.sequence is not None:
            files = [p for p in files if opts.sequence in (p.name, p.stem)]
            if not files:
                raise FileNotFoundError(f"{path}: no {opts.sequence}(.hdf5)")
        if not files:
            raise FileNotFoundError(f"{path}: no .hdf5 sequences and no poses.txt")
        if len(files) > 1:
            raise DataFormatError(f"{path}: {len(files)} sequences; choose one with sequence= "
                                  f"(e.g. {', '.join(p.stem for p in files[:5])})")
        frames, name = _load_hdf5(files[0], opts), files[0].stem
    warn_skipped(skipped)
    if not frames:
        raise DataFormatError(f"{path}: no frame has an image")
    loaded = load_frames(frames, opts, scale=float(opts.downscale or 1), per_frame_intrinsics=True)
    return make_scene(name, loaded, opts=opts)
