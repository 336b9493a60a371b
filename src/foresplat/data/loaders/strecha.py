"""Strecha / EPFL multi-view benchmark scenes: one `<image name>.camera` text file per image.

A `.camera` file (Strecha et al., CVPR 2008; the layout openMVG's SfM_quality_evaluation ships):

    fx  s   cx          3 rows K (pixels, at the full image size below)
    0   fy  cy
    0   0   1
    k1 k2 k3            distortion (zeros: the benchmark images are undistorted)
    r11 r12 r13         3 rows R, camera-to-world: its columns are the camera's x, y, z axes in the
    r21 r22 r23         world (OpenCV axes: x right, y down, z forward)
    r31 r32 r33
    cx cy cz            the camera centre C in world units
    width height        the full image size

so that x_cam = R^T (X - C) and P = K [R^T | -R^T C] (checked on the real scenes: the optical axes
meet in front of the cameras). K has pixel centres at integer coordinates (0.5 is added for
foresplat's convention) and is scaled to the size of the images read (images_N/, downscale.json).

Folder layout: the camera files in gt_dense_cameras/, cameras/, *_cameras/ or the scene folder
itself; the images in images/ or images_N/ (or beside the camera files), matched by name (a
`0000.jpg.camera` belongs to `0000.jpg`; another suffix with the same stem is accepted). A shared
K.txt is not needed. Images without a camera file are ignored; camera files whose image is
missing are skipped with one warning. No depth bounds or points: near/far come from the camera
layout (`common.estimate_bounds`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foresplat.data.loaders.common import (DataFormatError, FrameSpec, LoadOptions, check_intrinsics,
                                           check_rotation, find_image_folder, list_images, load_frames,
                                           make_scene, parse_floats, pick_views, read_text_file,
                                           warn_skipped)
from foresplat.data.loaders.conventions import integer_centre_to_half_pixel, strecha_to_viewmat
from foresplat.data.scene import Scene

CAMERA_SUFFIX = ".camera"
CAMERA_DIRS = ("gt_dense_cameras", "cameras", "gt_cameras", ".")
_ROWS = ((3, "K row 1"), (3, "K row 2"), (3, "K row 3"), (3, "distortion k1 k2 k3"), (3, "R row 1"),
         (3, "R row 2"), (3, "R row 3"), (3, "camera centre"), (2, "width height"))


def find_camera_dir(root: Path) -> Path | None:
    """The folder under `root` holding `*.camera` files (see module docstring), or None."""
    if not root.is_dir():
        return None
    cands = [root / d for d in CAMERA_DIRS] + sorted(p for p in root.glob("*_cameras") if p.is_dir())
    for d in cands:
        if d.is_dir() and any(p.suffix == CAMERA_SUFFIX for p in d.iterdir()):
            return d
    return None


def read_strecha_camera(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """A `.camera` file -> (K [3, 3] in its file's integer-centre convention, viewmat [4, 4] OpenCV,
    (width, height)). Errors name the file, the line and what was expected."""
    text = read_text_file(path, "Strecha .camera file")
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if len(lines) != len(_ROWS):
        raise DataFormatError(f"{path}: expected {len(_ROWS)} non-empty lines (3 K rows, distortion, "
                              f"3 R rows, camera centre, 'width height'), got {len(lines)}")
    rows = [parse_floats(tok, path, f"line {i + 1}", n, what) for i, (tok, (n, what)) in enumerate(zip(lines, _ROWS))]
    K = np.stack(rows[0:3])
    check_intrinsics(K, path, "lines 1-3")
    if np.abs(rows[3]).max() > 0:
        raise DataFormatError(f"{path}: line 4: expected zero distortion (the benchmark's images are "
                              f"undistorted), got {rows[3].tolist()}")
    R = np.stack(rows[4:7])
    check_rotation(R, path, "lines 5-7 (R)")
    w, h = rows[8]
    if w != int(w) or h != int(h) or w < 1 or h < 1:
        raise DataFormatError(f"{path}: line 9: expected the image size as two positive integers, "
                              f"got {rows[8].tolist()}")
    return K, strecha_to_viewmat(R, rows[7]), (int(w), int(h))


def _match_image(name: str, by_name: dict[str, Path], by_stem: dict[str, list[Path]]) -> Path | None:
    if name in by_name:
        return by_name[name]
    same = by_stem.get(Path(name).stem, [])
    return same[0] if len(same) == 1 else None


def load_strecha(path: Path, opts: LoadOptions) -> Scene:
    """Loads a Strecha scene folder (see module docstring) as a Scene."""
    root = path.parent if path.is_file() else path
    if path.is_file() and (root.name in CAMERA_DIRS or root.name.endswith("_cameras")):
        root = root.parent  # given <scene>/gt_dense_cameras/<image>.camera
    cam_dir = find_camera_dir(root)
    if cam_dir is None:
        raise FileNotFoundError(f"{root}: no Strecha camera files (*.camera in "
                                f"{', '.join(CAMERA_DIRS[:-1])}, *_cameras or the scene folder)")
    cam_files = sorted(p for p in cam_dir.iterdir() if p.suffix == CAMERA_SUFFIX and p.is_file())
    try:
        folder, _, scale = find_image_folder(root, ("images",), opts)
    except FileNotFoundError:
        folder, scale = cam_dir, float(opts.downscale or 1)  # images beside the camera files
    files = list_images(folder)
    by_name = {p.name: p for p in files}
    by_stem: dict[str, list[Path]] = {}
    for p in files:
        by_stem.setdefault(p.stem, []).append(p)
    pairs, skipped = [], []
    for cf in cam_files:
        img = _match_image(cf.name[: -len(CAMERA_SUFFIX)], by_name, by_stem)
        if img is None:
            skipped.append(str(folder / cf.name[: -len(CAMERA_SUFFIX)]))
        else:
            pairs.append((cf, img))
    warn_skipped(skipped)
    if not pairs:
        raise DataFormatError(f"{folder}: none of the {len(cam_files)} camera files in {cam_dir} has its image "
                              f"here (first: {cam_files[0].name})")
    frames = []
    for i in pick_views(len(pairs), opts.max_views):
        cf, img = pairs[i]
        K, view, size = read_strecha_camera(cf)
        frames.append(FrameSpec(image=img, label=str(img), viewmat=view, K=integer_centre_to_half_pixel(K),
                                calib_size=size))
    loaded = load_frames(frames, opts, scale=scale, per_frame_intrinsics=True)
    return make_scene(root.name, loaded, opts=opts)
