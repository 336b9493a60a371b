"""Middlebury multi-view stereo scenes (Seitz et al. 2006): `<name>_par.txt` + the images.

`<name>_par.txt`: the first line is the number of images, then one line per image

    imgname.png k11 k12 k13 k21 k22 k23 k31 k32 k33 r11 r12 r13 r21 r22 r23 r31 r32 r33 t1 t2 t3

with the projection x = K [R | t] X (world-to-camera, OpenCV axes: image origin top-left, x right,
y down). K is at the full image size with pixel centres at integer coordinates (0.5 is added for
foresplat's convention). The files carry no image size: images in images_N/ (or a folder named by
downscale.json) get K / N; images in images/ or beside the par file are at the full size.

When `<name>_par_present.txt` lies beside `<name>_par.txt` (the lines of the images that are
actually present, for a scene whose source lacked some) it is read instead; lines whose image is
missing are skipped with one warning. Near/far: from the object's bounding box when the folder's
README.txt states it ("The (tight) bounding box for the ... model is (x y z) (x y z)", as the
Middlebury releases do), else from the camera layout (`common.estimate_bounds`). No sparse points.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from foresplat.data.loaders.common import (DataFormatError, FrameSpec, LoadOptions, check_intrinsics,
                                           check_rotation, find_image_folder, list_images, load_frames,
                                           make_scene, parse_floats, pick_views, present_subset,
                                           read_text_file, scale_intrinsics, warn_skipped)
from foresplat.data.loaders.conventions import integer_centre_to_half_pixel
from foresplat.data.scene import Scene

PAR_SUFFIX = "_par.txt"
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_BOX = re.compile(rf"bounding box[^\n]*\n?\s*\(\s*{_NUM}\s+{_NUM}\s+{_NUM}\s*\)\s*\(\s*{_NUM}\s+{_NUM}\s+{_NUM}\s*\)",
                  re.IGNORECASE)


def find_par_files(root: Path) -> list[Path]:
    """The `*_par.txt` files of a folder (not the `*_par_present.txt` subsets), sorted."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"*{PAR_SUFFIX}") if p.is_file())


def read_par_file(path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """`<name>_par.txt` -> [(image name, K [3, 3] (file convention), viewmat [4, 4])]; errors name the
    file, the line and what was expected."""
    text = read_text_file(path, "Middlebury _par.txt file")
    lines = [(i + 1, ln.split()) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise DataFormatError(f"{path}: empty file (expected the image count on line 1)")
    lineno, first = lines[0]
    if len(first) != 1 or not first[0].isdigit() or int(first[0]) < 1:
        raise DataFormatError(f"{path}: line {lineno}: expected the number of images (a positive integer), "
                              f"got {' '.join(first)[:60]!r}")
    count = int(first[0])
    body = lines[1:]
    if len(body) != count:
        raise DataFormatError(f"{path}: line 1 says {count} images but {len(body)} camera lines follow")
    out = []
    for lineno, tok in body:
        where = f"line {lineno}"
        if len(tok) != 22:
            raise DataFormatError(f"{path}: {where}: expected 'imgname k11..k33 r11..r33 t1 t2 t3' "
                                  f"(22 fields), got {len(tok)}")
        vals = parse_floats(tok[1:], path, where, 21, "K row-major, R row-major, t")
        K, R, t = vals[:9].reshape(3, 3), vals[9:18].reshape(3, 3), vals[18:]
        check_intrinsics(K, path, where)
        check_rotation(R, path, where)
        view = np.eye(4)
        view[:3, :3], view[:3, 3] = R, t
        out.append((tok[0], K, view))
    names = [o[0] for o in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataFormatError(f"{path}: image {dup!r} is listed more than once")
    return out


def read_readme_box(root: Path) -> np.ndarray | None:
    """The bounding box [2, 3] (min, max corner) stated in `root`/README.txt, or None."""
    readme = root / "README.txt"
    if not readme.is_file() or readme.stat().st_size > 1 << 20:
        return None
    m = _BOX.search(readme.read_text(encoding="utf-8", errors="replace"))
    if m is None:
        return None
    box = np.array([float(g) for g in m.groups()]).reshape(2, 3)
    return np.sort(box, axis=0) if np.isfinite(box).all() else None


def box_bounds(viewmats: np.ndarray, box: np.ndarray) -> tuple[float, float] | None:
    """Near/far from the depths of a box's 8 corners in every camera (0.8 x min, 1.2 x max), or None
    when a corner lies behind a camera."""
    corners = np.array([[box[i, 0], box[j, 1], box[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    v = np.asarray(viewmats, dtype=np.float64)
    z = (np.einsum("vij,pj->vpi", v[:, :3, :3], corners) + v[:, None, :3, 3])[..., 2]
    if z.min() <= 0:
        return None
    return 0.8 * float(z.min()), 1.2 * float(z.max())


def load_middlebury(path: Path, opts: LoadOptions) -> Scene:
    """Loads a Middlebury scene folder (or its `_par.txt`) as a Scene (see module docstring)."""
    if path.is_file():
        root, par = path.parent, path
    else:
        root = path
        pars = find_par_files(root)
        if not pars:
            raise FileNotFoundError(f"{root}: no Middlebury camera file (*{PAR_SUFFIX})")
        if len(pars) > 1:
            raise DataFormatError(f"{root}: several camera files ({', '.join(p.name for p in pars)}); "
                                  f"pass the one to load as the path")
        par = present_subset(pars[0])
    cams = read_par_file(par)
    try:
        folder, factor, scale = find_image_folder(root, ("images",), opts)
    except FileNotFoundError:
        folder, factor = root, 1  # the original release: images beside the par file
        scale = float(opts.downscale or 1)
    by_name = {p.name: p for p in list_images(folder)}
    present, skipped = [], []
    for name, K, view in cams:
        if name in by_name:
            present.append((by_name[name], K, view))
        else:
            skipped.append(str(folder / name))
    warn_skipped(skipped)
    if not present:
        raise DataFormatError(f"{folder}: none of the {len(cams)} images listed in {par} is here "
                              f"(first: {cams[0][0]})")
    frames = []
    for i in pick_views(len(present), opts.max_views):
        img, K, view = present[i]
        Kn = scale_intrinsics(integer_centre_to_half_pixel(K), 1.0 / factor, 1.0 / factor)
        frames.append(FrameSpec(image=img, label=str(img), viewmat=view, K=Kn))
    loaded = load_frames(frames, opts, scale=scale, per_frame_intrinsics=True)
    near = far = None
    box = read_readme_box(root)
    if box is not None:
        got = box_bounds(loaded.viewmats, box)
        if got is not None:
            near, far = got
    return make_scene(root.name, loaded, opts=opts, near=near, far=far)
