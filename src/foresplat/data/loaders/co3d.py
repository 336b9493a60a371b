"""CO3Dv2 sequences: <root>/<category>/frame_annotations.jgz + <category>/<sequence>/images/*.jpg.

frame_annotations.jgz is a gzipped JSON list with one object per frame:
    sequence_name, frame_number, image {path (relative to <root>), size [H, W]},
    viewpoint {R [3x3], T [3], focal_length [2], principal_point [2],
               intrinsics_format "ndc_norm_image_bounds" (CO3Dv2's default) or "ndc_isotropic"},
    mask {path}?, depth {path, scale_adjustment, mask_path}?
Cameras follow PyTorch3D: X_cam = X_world @ R + T (row vectors) with camera +X left, +Y up, +Z
forward; intrinsics are NDC (see conventions.ndc_to_pixel_intrinsics). Depth maps are 16-bit PNGs
holding float16 bit patterns, times scale_adjustment, z-depth along the camera axis; depth_mask
marks the valid pixels. <category>/<sequence>/pointcloud.ply, when present, gives sparse points.

The path may be a sequence folder (its parent holds frame_annotations.jgz), the category folder
or the .jgz file (then LoadOptions.sequence names the sequence, unless there is only one).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
from PIL import Image

from foresplat.data.loaders.common import (DataFormatError, FrameSpec, LoadOptions, load_frames,
                                           make_scene, pick_views, read_ply_points, warn_skipped)
from foresplat.data.loaders.conventions import ndc_to_pixel_intrinsics, pytorch3d_to_viewmat
from foresplat.data.scene import Scene

ANNOTATIONS = "frame_annotations.jgz"


def read_jgz(path: Path) -> list:
    """A gzipped JSON list; errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: not a readable gzip file ({type(e).__name__}: {e})") from None
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected a JSON list of frame annotations, got {type(data).__name__}")
    return data


def read_co3d_depth(path: Path, scale: float, mask_path: Path | None) -> np.ndarray:
    """CO3D depth PNG (uint16 holding float16 bits) x scale -> [H, W] float32 z-depth (0 = invalid)."""
    try:
        with Image.open(path) as im:
            raw = np.asarray(im).astype(np.uint16)
    except Exception as e:
        raise DataFormatError(f"{path}: cannot read depth PNG ({type(e).__name__}: {e})") from None
    depth = raw.view(np.float16).astype(np.float32) * float(scale)
    if mask_path is not None and mask_path.is_file():
        try:
            with Image.open(mask_path) as im:
                valid = np.asarray(im.convert("L")) > 127
        except Exception as e:
            raise DataFormatError(f"{mask_path}: cannot read depth mask ({type(e).__name__}: {e})") from None
        if valid.shape != depth.shape:
            raise DataFormatError(f"{mask_path}: depth mask is {valid.shape[::-1]} but {path} is "
                                  f"{depth.shape[::-1]}")
        depth = np.where(valid, depth, 0.0)
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)


def _locate(path: Path, opts: LoadOptions) -> tuple[Path, Path, str | None]:
    """(annotation file, category folder, sequence name or None)."""
    if path.is_file():
        return path, path.parent, opts.sequence
    if (path / ANNOTATIONS).is_file():
        return path / ANNOTATIONS, path, opts.sequence
    if (path.parent / ANNOTATIONS).is_file():
        return path.parent / ANNOTATIONS, path.parent, opts.sequence or path.name
    raise FileNotFoundError(f"{path}: no {ANNOTATIONS} here or in the parent folder")


def _get(entry: dict, ann: Path, i: int, *keys):
    cur = entry
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            raise DataFormatError(f"{ann}: frame annotation {i} has no {'.'.join(keys)}")
        cur = cur[k]
    return cur


def load_co3d(path: Path, opts: LoadOptions) -> Scene:
    """Loads one CO3Dv2 sequence (see module docstring) as a Scene."""
    ann, cat_dir, seq = _locate(path, opts)
    root = cat_dir.parent
    entries = read_jgz(ann)
    names = sorted({str(e.get("sequence_name")) for e in entries if isinstance(e, dict)})
    if seq is None:
        if len(names) != 1:
            raise DataFormatError(f"{ann}: {len(names)} sequences; choose one with sequence= "
                                  f"(e.g. {', '.join(names[:5])})")
        seq = names[0]
    sel = [(i, e) for i, e in enumerate(entries) if isinstance(e, dict) and str(e.get("sequence_name")) == seq]
    if not sel:
        raise DataFormatError(f"{ann}: no frames of sequence {seq!r} (have: {', '.join(names[:5])}...)")
    sel.sort(key=lambda ie: ie[1].get("frame_number", ie[0]))
    frames, skipped = [], []
    for k in pick_views(len(sel), opts.max_views):
        i, e = sel[k]
        size = _get(e, ann, i, "image", "size")
        rel = _get(e, ann, i, "image", "path")
        vp = _get(e, ann, i, "viewpoint")
        try:
            H, W = int(size[0]), int(size[1])
            R = np.asarray(vp["R"], dtype=np.float64)
            T = np.asarray(vp["T"], dtype=np.float64)
            focal = np.asarray(vp["focal_length"], dtype=np.float64).reshape(-1)
            pp = np.asarray(vp["principal_point"], dtype=np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise DataFormatError(f"{ann}: frame annotation {i}: bad viewpoint or image size ({err})") from None
        if R.shape != (3, 3) or T.shape != (3,) or focal.size != 2 or pp.size != 2 or \
                not all(np.isfinite(a).all() for a in (R, T, focal, pp)):
            raise DataFormatError(f"{ann}: frame annotation {i}: viewpoint needs finite R 3x3, T 3, "
                                  f"focal_length 2, principal_point 2")
        try:
            K = ndc_to_pixel_intrinsics(focal, pp, vp.get("intrinsics_format", "ndc_norm_image_bounds"), W, H)
        except ValueError as err:
            raise DataFormatError(f"{ann}: frame annotation {i}: {err}") from None
        img = next((p for p in (root / rel, cat_dir / rel) if p.is_file()), None)
        if img is None:
            skipped.append(str(root / rel))
            continue
        mask = depth = None
        m = e.get("mask") or {}
        if isinstance(m, dict) and m.get("path") and (root / m["path"]).is_file():
            mask = root / m["path"]
        d = e.get("depth") or {}
        if opts.depths and isinstance(d, dict) and d.get("path") and (root / d["path"]).is_file():
            dp, ds = root / d["path"], float(d.get("scale_adjustment", 1.0))
            dm = root / d["mask_path"] if d.get("mask_path") else None
            depth = (lambda dp=dp, ds=ds, dm=dm: read_co3d_depth(dp, ds, dm))
        frames.append(FrameSpec(image=img, label=str(img), viewmat=pytorch3d_to_viewmat(R, T)[0], K=K,
                                calib_size=(W, H), mask=mask, depth=depth))
    warn_skipped(skipped)
    if not frames:
        raise DataFormatError(f"{ann}: none of the {len(sel)} frames of {seq!r} has an image file")
    loaded = load_frames(frames, opts, scale=float(opts.downscale or 1), per_frame_intrinsics=True)
    points = colors = None
    ply = cat_dir / seq / "pointcloud.ply"
    if opts.points and ply.is_file():
        points, colors = read_ply_points(ply)
    return make_scene(f"{cat_dir.name}/{seq}", loaded, opts=opts, points=points, point_colors=colors)
