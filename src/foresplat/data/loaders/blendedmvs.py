"""BlendedMVS scenes in the MVSNet layout: <PID>/blended_images/, <PID>/cams/, <PID>/rendered_depth_maps/.

cams/XXXXXXXX_cam.txt (MVSNet format):
    extrinsic
    4x4 world-to-camera matrix (OpenCV axes), 4 lines
    <blank>
    intrinsic
    3x3 K, 3 lines
    <blank>
    DEPTH_MIN DEPTH_INTERVAL [DEPTH_NUM DEPTH_MAX]
blended_images/XXXXXXXX.jpg is the view (XXXXXXXX_masked.jpg variants are ignored),
rendered_depth_maps/XXXXXXXX.pfm its z-depth. MVSNet code treats pixel (u, v) as the point (u, v),
so 0.5 is added to the principal point for foresplat's +0.5 convention. Near/far come from the depth
ranges of the cam files (DEPTH_MAX, else DEPTH_MIN + (DEPTH_NUM - 1) * DEPTH_INTERVAL; non-positive
ranges, which the dataset notes a few of, are ignored). Cam files without an image are skipped
with a warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foresplat.data.loaders.common import (DataFormatError, FrameSpec, LoadOptions, load_frames,
                                           make_scene, pick_views, warn_skipped)
from foresplat.data.loaders.conventions import integer_centre_to_half_pixel
from foresplat.data.scene import Scene


def read_mvsnet_cam(path: Path) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """An MVSNet *_cam.txt -> (extrinsic [4, 4] world-to-camera, intrinsic [3, 3], depth values [0..4])."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    tok = path.read_text(encoding="utf-8", errors="replace").split()

    def block(name: str, n: int) -> tuple[np.ndarray, int]:
        if name not in tok:
            raise DataFormatError(f"{path}: no '{name}' block")
        i = tok.index(name) + 1
        try:
            vals = np.array([float(t) for t in tok[i:i + n]], dtype=np.float64)
        except ValueError:
            raise DataFormatError(f"{path}: '{name}' must be followed by {n} numbers") from None
        if vals.size != n or not np.isfinite(vals).all():
            raise DataFormatError(f"{path}: '{name}' must be followed by {n} finite numbers")
        return vals, i + n

    ext, _ = block("extrinsic", 16)
    K, end = block("intrinsic", 9)
    rest = []
    for t in tok[end:end + 4]:
        try:
            rest.append(float(t))
        except ValueError:
            break
    E = ext.reshape(4, 4)
    if not np.allclose(E[3], [0, 0, 0, 1], atol=1e-6):
        raise DataFormatError(f"{path}: extrinsic last row must be 0 0 0 1, got {E[3].tolist()}")
    return E, K.reshape(3, 3), rest


def read_pfm(path: Path) -> np.ndarray:
    """A PFM image -> [H, W] (or [H, W, 3]) float32, top row first."""
    try:
        with open(path, "rb") as f:
            kind = f.readline().strip()
            if kind not in (b"Pf", b"PF"):
                raise ValueError(f"bad header {kind[:8]!r}")
            dims = f.readline().split()
            while not dims:
                dims = f.readline().split()
            w, h = int(dims[0]), int(dims[1])
            scale = float(f.readline().strip())
            c = 1 if kind == b"Pf" else 3
            data = np.frombuffer(f.read(), dtype="<f4" if scale < 0 else ">f4")
        if data.size != w * h * c:
            raise ValueError(f"expected {w * h * c} values, found {data.size}")
    except (OSError, ValueError, IndexError) as e:
        raise DataFormatError(f"{path}: cannot read PFM ({e})") from None
    img = data.reshape(h, w, c) if c == 3 else data.reshape(h, w)
    return np.flipud(img).astype(np.float32)


def load_blendedmvs(path: Path, opts: LoadOptions) -> Scene:
    """Loads a BlendedMVS scene folder (see module docstring) as a Scene."""
    cams = sorted((path / "cams").glob("*_cam.txt"))
    if not cams:
        raise FileNotFoundError(f"{path / 'cams'}: no *_cam.txt files")
    img_dir = path / (opts.images_dir or "blended_images")
    frames, skipped, lo, hi = [], [], [], []
    for cf in cams:
        E, K, dep = read_mvsnet_cam(cf)
        if len(dep) >= 2 and dep[0] > 0:
            far = dep[3] if len(dep) >= 4 else dep[0] + (dep[2] - 1 if len(dep) >= 3 else 191) * dep[1]
            if far > dep[0]:
                lo.append(dep[0])
                hi.append(far)
        frames.append((cf, E, K))
    chosen = []
    for i in pick_views(len(frames), opts.max_views):
        cf, E, K = frames[i]
        stem = cf.name[: -len("_cam.txt")]
        img = next((img_dir / (stem + s) for s in (".jpg", ".png", ".jpeg")
                    if (img_dir / (stem + s)).is_file()), None)
        if img is None:
            skipped.append(str(img_dir / (stem + ".jpg")))
            continue
        dp = path / "rendered_depth_maps" / f"{stem}.pfm"
        chosen.append(FrameSpec(image=img, label=str(img), viewmat=E, K=integer_centre_to_half_pixel(K),
                                depth=(lambda dp=dp: read_pfm(dp)) if dp.is_file() else None))
    warn_skipped(skipped)
    if not chosen:
        raise DataFormatError(f"{img_dir}: none of the {len(cams)} cameras in {path / 'cams'} has an image")
    loaded = load_frames(chosen, opts, scale=float(opts.downscale or 1), per_frame_intrinsics=True)
    near = min(lo) if lo else None
    far = max(hi) if hi else None
    return make_scene(path.name, loaded, opts=opts, near=near, far=far)
