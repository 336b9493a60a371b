"""COLMAP sparse models (binary or text) read by foresplat's own reader (colmap_io), with images/ or images_N/.

The model folder is the first of sparse/0, sparse, the scene folder itself, colmap/sparse/0,
distorted/sparse/0 that holds images.bin or images.txt; it needs cameras and images, points3D is
optional (COLMAP 3.12+ models with rigs.bin/frames.bin load too: their images.bin keeps each
image's pose). The reader checks every header count against the file size before allocating, so
a corrupt model fails at once with one line naming the file (pycolmap is not used: it grew to
~17 GB on such files). COLMAP poses are world-to-camera
in OpenCV axes already, and COLMAP's pixel convention matches foresplat's (pixel centres at +0.5),
so viewmats and K are taken as they are. Images are the registered ones, sorted by name; those
whose file is missing are skipped with a warning. Intrinsics are scaled to the size of the
images read (images_N from 3DGS-style downscaled folders, or in-memory resizing) and distorted
camera models (SIMPLE_RADIAL, RADIAL, OPENCV, OPENCV_FISHEYE, FULL_OPENCV) are undistorted.
The sparse points are points3D (xyz and colour).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foresplat.data.loaders.colmap_io import read_model
from foresplat.data.loaders.common import (DataFormatError, FrameSpec, LoadOptions, find_image_folder,
                                           inside_folder, load_frames, make_scene, pick_views, warn_skipped)
from foresplat.data.loaders.conventions import colmap_to_viewmat, intrinsics
from foresplat.data.loaders.distortion import colmap_camera_to_pinhole
from foresplat.data.scene import Scene

MODEL_SUBDIRS = (("sparse", "0"), ("sparse",), (), ("colmap", "sparse", "0"), ("distorted", "sparse", "0"))


def find_colmap_model(root: Path) -> Path | None:
    """The model folder under `root` holding images.bin/txt (see module docstring), or None."""
    for sub in MODEL_SUBDIRS:
        d = root.joinpath(*sub)
        if (d / "images.bin").is_file() or (d / "images.txt").is_file():
            return d
    return None


def load_colmap(path: Path, opts: LoadOptions) -> Scene:
    """Loads a scene with a COLMAP model (see module docstring) as a Scene."""
    root = path
    if path.name.isdigit() and path.parent.name == "sparse":  # given the model folder <scene>/sparse/0
        root = path.parent.parent
    model = find_colmap_model(path) or find_colmap_model(root)
    if model is None:
        raise FileNotFoundError(f"{root}: no COLMAP model (images.bin or images.txt in "
                                f"{', '.join('/'.join(s) or '.' for s in MODEL_SUBDIRS)})")
    rec = read_model(model, points=opts.points)
    images = sorted(rec.images.values(), key=lambda im: im.name)
    if not images:
        raise DataFormatError(f"{model}: the model has no registered images")
    folder, _, scale = find_image_folder(root, ("images",), opts)
    frames, skipped = [], []
    for i in pick_views(len(images), opts.max_views):
        im = images[i]
        cam = rec.cameras[im.camera_id]
        try:
            fx, fy, cx, cy, dist = colmap_camera_to_pinhole(cam.model, cam.params)
        except ValueError as e:
            raise DataFormatError(f"{model}: camera {im.camera_id} (image {im.name}): {e}") from None
        if not inside_folder(folder, im.name) and not opts.allow_outside_paths:
            raise DataFormatError(f"{model}: image {im.image_id} name {im.name!r} points outside the images "
                                  f"folder {folder}; pass allow_outside_paths=True to read it")
        file = folder / im.name
        if not file.is_file():
            skipped.append(str(file))
            continue
        frames.append(FrameSpec(image=file, label=str(file), viewmat=colmap_to_viewmat(im.qvec, im.tvec)[0],
                                K=intrinsics(fx, fy, cx, cy), calib_size=(int(cam.width), int(cam.height)),
                                distortion=dist))
    warn_skipped(skipped)
    if not frames:
        raise DataFormatError(f"{folder}: none of the {len(images)} registered images of {model} exists")
    loaded = load_frames(frames, opts, scale=scale, per_frame_intrinsics=len(rec.cameras) > 1)
    points = colors = None
    if opts.points and rec.points is not None and len(rec.points.xyz) > 0:
        points, colors = rec.points.xyz, rec.points.rgb.astype(np.float64) / 255.0
    return make_scene(root.name, loaded, opts=opts, points=points, point_colors=colors)
