"""IDR / NeuS scenes (DTU, BlendedMVS-NeuS): cameras_sphere.npz + image/ (or images_N/) + mask/.

cameras_sphere.npz holds, per view i, world_mat_i = K [R | t] (4x4, at the full image resolution,
K with pixel centres at integer coordinates as IDR/NeuS cast rays through integer pixel positions)
and scale_mat_i, which maps the unit sphere onto the object (identical for all views). The
projection is decomposed by an RQ decomposition (no OpenCV); 0.5 is added to the principal point
for foresplat's +0.5 pixel-centre convention, and K is divided by N for images_N. With
LoadOptions.normalize the cameras are expressed in the scale_mat frame (P = world_mat @ scale_mat),
where the object lies in the unit sphere; otherwise in the calibration's world frame (mm for DTU).

Sparse points: when the folder also holds a COLMAP model (sparse/0/points3D.bin) with LLFF poses
(poses_bounds.npy) for the same views, the COLMAP frame is aligned to the calibrated one by a
similarity fitted on the camera centres (Umeyama) and the points are carried over; they are
dropped with a warning when the cameras disagree by more than 2% of the camera spread.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np

from foresplat.data.loaders.colmap_io import find_sparse_points, read_sparse_points
from foresplat.data.loaders.common import (DataFormatError, FrameSpec, LoadOptions, find_image_folder,
                                           list_images, load_frames, make_scene, pick_views,
                                           scale_intrinsics)
from foresplat.data.loaders.conventions import (decompose_projection, integer_centre_to_half_pixel,
                                                llff_to_viewmat)
from foresplat.data.loaders.geometry import camera_centres, compare_cameras
from foresplat.data.loaders.llff import read_poses_bounds
from foresplat.data.scene import Scene

CAMERA_FILES = ("cameras_sphere.npz", "cameras.npz", "cameras_large.npz")
log = logging.getLogger(__name__)


def read_idr_cameras(npz_path: Path, normalize: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """cameras_sphere.npz -> (Ks [N, 3, 3] full resolution, +0.5 convention; viewmats [N, 4, 4];
    scale_mat [4, 4] of view 0 or None). Errors name the file and key."""
    if not npz_path.is_file():
        raise FileNotFoundError(f"{npz_path}: file not found")
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            cams = {k: np.asarray(z[k], dtype=np.float64) for k in z.files}
    except Exception as e:
        raise DataFormatError(f"{npz_path}: cannot read as a .npz archive ({type(e).__name__}: {e})") from None
    idx = sorted(int(k[10:]) for k in cams if re.fullmatch(r"world_mat_\d+", k))
    if not idx:
        raise DataFormatError(f"{npz_path}: no world_mat_<i> arrays (keys: {', '.join(sorted(cams)[:6])})")
    if idx != list(range(len(idx))):
        raise DataFormatError(f"{npz_path}: world_mat indices are not 0..{len(idx) - 1}")
    Ks, views = [], []
    for i in idx:
        P = cams[f"world_mat_{i}"]
        if P.shape not in ((4, 4), (3, 4)) or not np.isfinite(P).all():
            raise DataFormatError(f"{npz_path}: world_mat_{i} must be a finite 3x4 or 4x4 matrix, "
                                  f"got shape {list(P.shape)}")
        if normalize:
            S = cams.get(f"scale_mat_{i}")
            if S is None or S.shape != (4, 4):
                raise DataFormatError(f"{npz_path}: normalize=True needs scale_mat_{i} (4x4)")
            P = P[:3] @ S
        try:
            K, view = decompose_projection(P)
        except ValueError as e:
            raise DataFormatError(f"{npz_path}: world_mat_{i}: {e}") from None
        Ks.append(integer_centre_to_half_pixel(K))
        views.append(view)
    S0 = cams.get("scale_mat_0")
    return np.stack(Ks), np.stack(views), (S0 if S0 is not None and S0.shape == (4, 4) else None)


def _mask_files(root: Path, factor: int, count: int) -> list[Path] | None:
    for base in ("mask", "masks"):
        folder = root / (base if factor == 1 else f"{base}_{factor}")
        if folder.is_dir():
            files = list_images(folder)
            if len(files) != count:
                raise DataFormatError(f"{folder}: {len(files)} masks but there are {count} images")
            return files
    return None


def _aligned_points(root: Path, viewmats: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """COLMAP sparse points moved into the calibrated frame (see module docstring), or None."""
    sp = find_sparse_points(root)
    pb = root / "poses_bounds.npy"
    if sp is None or not pb.is_file():
        return None
    poses, _ = read_poses_bounds(pb)
    if len(poses) != len(viewmats):
        warnings.warn(f"{pb}: {len(poses)} poses but {len(viewmats)} calibrated cameras; sparse points "
                      f"not loaded", stacklevel=3)
        return None
    agree = compare_cameras(llff_to_viewmat(poses), viewmats)
    c = camera_centres(viewmats)
    spread = float(np.linalg.norm(c - c.mean(0), axis=-1).max())
    med = float(np.median(agree.centre_errors))
    log.info("%s: COLMAP -> calibrated frame: scale %.4g, median centre error %.3g, median rotation "
             "error %.3g deg", root, agree.similarity.scale, med, float(np.median(agree.rotation_errors_deg)))
    if med > 0.02 * spread:
        warnings.warn(f"{root}: COLMAP cameras disagree with the calibrated ones (median centre error "
                      f"{med:.3g}, camera spread {spread:.3g}); sparse points not loaded", stacklevel=3)
        return None
    pts = read_sparse_points(sp)
    return agree.similarity.apply(pts.xyz), pts.rgb.astype(np.float64) / 255.0


def load_idr(path: Path, opts: LoadOptions) -> Scene:
    """Loads an IDR/NeuS scene folder (see module docstring) as a Scene."""
    if path.is_file():
        root, npz = path.parent, path
    else:
        root = path
        npz = next((root / n for n in CAMERA_FILES if (root / n).is_file()), root / CAMERA_FILES[0])
    Ks_full, viewmats, S0 = read_idr_cameras(npz, normalize=opts.normalize)
    folder, factor, scale = find_image_folder(root, ("image", "images"), opts)
    files = list_images(folder)
    if len(files) != len(viewmats):
        raise DataFormatError(f"{folder}: {len(files)} images but {npz} has {len(viewmats)} cameras")
    masks = _mask_files(root, factor, len(files)) if opts.masks else None
    frames = [FrameSpec(image=files[i], label=str(files[i]), viewmat=viewmats[i],
                        K=scale_intrinsics(Ks_full[i], 1.0 / factor, 1.0 / factor),
                        mask=None if masks is None else masks[i])
              for i in pick_views(len(files), opts.max_views)]
    loaded = load_frames(frames, opts, scale=scale)
    near = far = None
    if S0 is not None:
        centre, radius = (np.zeros(3), 1.0) if opts.normalize else (S0[:3, 3], float(S0[0, 0]))
        d = np.linalg.norm(camera_centres(viewmats) - centre, axis=-1)
        near, far = max(float(d.min()) - radius, 0.05 * float(d.min())), float(d.max()) + radius
    points = colors = None
    if opts.points:
        got = _aligned_points(root, viewmats)
        if got is not None:
            points, colors = got
    return make_scene(root.name, loaded, opts=opts, points=points, point_colors=colors, near=near, far=far)
