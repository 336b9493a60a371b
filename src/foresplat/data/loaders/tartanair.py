"""TartanAir trajectories: <env>/<Easy|Hard>/<Pxxx>/ with pose_left.txt, image_left/, depth_left/.

pose_left.txt: one line per frame "tx ty tz qx qy qz qw", the camera-to-world pose of the left
camera in NED axes (x forward, y right, z down), in metres. image_left/*.png are 640x480 with fixed
pinhole intrinsics fx = fy = 320, cx = 320, cy = 240 (90 degree field of view; the principal point
is the image centre, foresplat's convention). depth_left/*_depth.npy hold float32 z-depth in
metres (the sky is a large finite value). Poses are converted by ned_c2w_to_viewmat (the NED world
frame is kept). The path may also be a folder of trajectories (LoadOptions.sequence picks one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foresplat.data.loaders.common import (DataFormatError, FrameSpec, LoadOptions, list_images,
                                           load_frames, make_scene, pick_views, read_npy)
from foresplat.data.loaders.conventions import intrinsics, ned_c2w_to_viewmat
from foresplat.data.scene import Scene

TARTANAIR_K = intrinsics(320.0, 320.0, 320.0, 240.0)
TARTANAIR_SIZE = (640, 480)
POSE_FILE = "pose_left.txt"


def read_tartanair_poses(path: Path) -> np.ndarray:
    """pose_left.txt -> [N, 7] float64 (tx ty tz qx qy qz qw); errors name the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            vals = [float(t) for t in line.split()]
        except ValueError:
            raise DataFormatError(f"{path}:{lineno}: expected 7 numbers 'tx ty tz qx qy qz qw', "
                                  f"got {line[:80]!r}") from None
        if len(vals) != 7 or not np.isfinite(vals).all():
            raise DataFormatError(f"{path}:{lineno}: expected 7 finite numbers 'tx ty tz qx qy qz qw', "
                                  f"got {len(vals)}")
        rows.append(vals)
    if not rows:
        raise DataFormatError(f"{path}: no poses")
    return np.array(rows, dtype=np.float64)


def _trajectory(path: Path, opts: LoadOptions) -> Path:
    if (path / POSE_FILE).is_file():
        return path
    subs = sorted(p.parent for p in path.glob(f"*/{POSE_FILE}"))
    if opts.sequence is not None:
        if (path / opts.sequence / POSE_FILE).is_file():
            return path / opts.sequence
        raise FileNotFoundError(f"{path / opts.sequence}: no {POSE_FILE}")
    if len(subs) == 1:
        return subs[0]
    if not subs:
        raise FileNotFoundError(f"{path}: no {POSE_FILE}")
    raise DataFormatError(f"{path}: {len(subs)} trajectories; choose one with sequence= "
                          f"(e.g. {', '.join(p.name for p in subs[:5])})")


def load_tartanair(path: Path, opts: LoadOptions) -> Scene:
    """Loads one TartanAir trajectory (see module docstring) as a Scene."""
    traj = _trajectory(path, opts)
    poses = read_tartanair_poses(traj / POSE_FILE)
    images = list_images(traj / "image_left")
    if len(images) != len(poses):
        raise DataFormatError(f"{traj / 'image_left'}: {len(images)} images but {traj / POSE_FILE} "
                              f"has {len(poses)} poses")
    depths = None
    if opts.depths and (traj / "depth_left").is_dir():
        depths = sorted((traj / "depth_left").glob("*.npy"))
        if len(depths) != len(images):
            raise DataFormatError(f"{traj / 'depth_left'}: {len(depths)} depth maps but {len(images)} images")
    viewmats = ned_c2w_to_viewmat(poses[:, :3], poses[:, 3:])
    frames = [FrameSpec(image=images[i], label=str(images[i]), viewmat=viewmats[i], K=TARTANAIR_K,
                        calib_size=TARTANAIR_SIZE,
                        depth=None if depths is None else (lambda p=depths[i]: read_npy(p)))
              for i in pick_views(len(images), opts.max_views)]
    loaded = load_frames(frames, opts, scale=float(opts.downscale or 1))
    return make_scene(f"{traj.parent.parent.name}/{traj.parent.name}/{traj.name}", loaded, opts=opts)
