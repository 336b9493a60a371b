"""LLFF scenes: poses_bounds.npy + images/ (or images_N/), optional sparse/0/points3D.bin.

poses_bounds.npy is an [N, 17] float array: per view a 3x5 matrix [R | t | hwf] (row-major, camera-
to-world, rotation columns (down, right, back), hwf = (height, width, focal) of the FULL resolution
images) followed by the near and far depth bounds. Views are the sorted image files, in order.
The principal point is the image centre. Intrinsics are scaled to the size of the images read
(images_N holds the images downscaled N times; a scene shipped only as images_N/ loads as it is,
see `common.image_folders`). The world frame is COLMAP's, so COLMAP's points3D (when present) are
the scene's sparse points. When poses_bounds_present.npy lies beside poses_bounds.npy (the rows of
the images actually present, for a scene whose source lacked some), it is read instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foresplat.data.loaders.colmap_io import find_sparse_points, read_sparse_points
from foresplat.data.loaders.common import (DataFormatError, FrameSpec, LoadOptions, find_image_folder,
                                           list_images, load_frames, make_scene, pick_views,
                                           present_subset)
from foresplat.data.loaders.conventions import intrinsics, llff_to_viewmat
from foresplat.data.scene import Scene


def read_poses_bounds(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """poses_bounds.npy -> (poses [N, 3, 5], bounds [N, 2]); errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise DataFormatError(f"{path}: cannot read as a numpy array ({type(e).__name__}: {e})") from None
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] < 1:
        raise DataFormatError(f"{path}: expected an [N, 17] array (3x5 pose + near, far per view), "
                              f"got shape {list(arr.shape)}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise DataFormatError(f"{path}: contains NaN or inf")
    poses, bounds = arr[:, :15].reshape(-1, 3, 5), arr[:, 15:17]
    if (poses[:, :, 4] <= 0).any():
        raise DataFormatError(f"{path}: height, width and focal (column 5) must be positive")
    return poses, bounds


def load_llff(path: Path, opts: LoadOptions) -> Scene:
    """Loads an LLFF scene folder (see module docstring) as a Scene."""
    root = path.parent if path.is_file() else path
    pb = path if path.is_file() else present_subset(root / "poses_bounds.npy")
    poses, bounds = read_poses_bounds(pb)
    folder, _, scale = find_image_folder(root, ("images",), opts)
    files = list_images(folder)
    if len(files) != len(poses):
        raise DataFormatError(f"{folder}: {len(files)} images but {pb} has {len(poses)} poses")
    viewmats = llff_to_viewmat(poses)
    frames = []
    for i in pick_views(len(poses), opts.max_views):
        h, w, f = poses[i, :, 4]
        frames.append(FrameSpec(image=files[i], label=str(files[i]), viewmat=viewmats[i],
                                K=intrinsics(f, f, w / 2.0, h / 2.0),
                                calib_size=(int(round(w)), int(round(h)))))
    loaded = load_frames(frames, opts, scale=scale)
    points = colors = None
    sp = find_sparse_points(root) if opts.points else None
    if sp is not None:
        pts = read_sparse_points(sp)
        points, colors = pts.xyz, pts.rgb.astype(np.float64) / 255.0
    near, far = float(bounds[:, 0].min()), float(bounds[:, 1].max())
    if not 0 < near < far:
        near = far = None  # unusable bounds: estimated from points / layout instead
    return make_scene(root.name, loaded, opts=opts, points=points, point_colors=colors, near=near, far=far)
