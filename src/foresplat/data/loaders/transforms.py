"""NeRF / instant-ngp / nerfstudio `transforms.json` scenes (also DL3DV-10K and ScanNet++ exports).

File layout (JSON): top-level intrinsics shared by all frames, each overridable per frame:
    camera_angle_x [, camera_angle_y]   horizontal (vertical) field of view in radians (NeRF Blender);
                                         resolution independent: fx = W / 2 / tan(angle_x / 2)
    fl_x, fl_y, cx, cy, w, h             pixel intrinsics for a w x h image (instant-ngp, nerfstudio);
                                         scaled when the image read has another size (images_N)
    k1, k2, k3, k4, p1, p2, camera_model distortion; camera_model "OPENCV" (default, k1 k2 k3 p1 p2)
                                         or "OPENCV_FISHEYE" (k1..k4); undistorted on load
    frames: [{file_path, transform_matrix (4x4 OpenGL camera-to-world: looks along -z, y up),
              mask_path?}], nerfstudio also test_frames (ScanNet++); ply_file_path (sparse points)
The principal point defaults to the image centre. instant-ngp's scale/offset/aabb_scale are hints
for its own renderer, not part of the poses, and are ignored.

Files: transforms.json (or transforms_present.json beside it: the subset of frames whose images
are present, preferred when there), else transforms_<split>.json (NeRF Blender: train/val/test; by
default every split, a frame listed in two splits, like val = test, read once). Image paths are
relative to the JSON's folder; a missing suffix tries .png then .jpg; ScanNet++'s layout
(dslr/nerfstudio/transforms.json with images in dslr/resized_images, masks in
dslr/resized_anon_masks) is found too. A `file_path` that is absolute or climbs out of the JSON's
folder with '..' is refused unless LoadOptions.allow_outside_paths.

Downscaled images: a frame's image may also lie in a pre-downscaled folder of the JSON's folder,
`images_N/<file name of file_path>` (nerfstudio's convention, also named by downscale.json; see
`common.image_folders`), or in a sibling "<dir>_N" of its own folder. With downscale None the
largest images present are read (so `file_path: images/x.jpg` with only images_8/x.jpg present
loads images_8); with downscale D the largest factor N <= D, resized in memory by D / N. Pixel
intrinsics (fl_x, cx, w, h) are at the original size and follow the image size read.
Frames whose image file is missing are skipped with one warning. RGBA images are composited
onto LoadOptions.background and their alpha becomes the mask. Per-frame depth files
(depth_file_path, in dataset-specific units) are not read.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np

from foresplat.data.loaders.common import (DataFormatError, FrameSpec, LoadOptions, folder_factor,
                                           image_folders, inside_folder, load_frames, make_scene,
                                           pick_views, present_subset, read_ply_points, scale_intrinsics,
                                           warn_skipped)
from foresplat.data.loaders.conventions import intrinsics, opengl_c2w_to_viewmat
from foresplat.data.loaders.distortion import Distortion
from foresplat.data.scene import Scene

INTRINSIC_KEYS = ("camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy", "w", "h",
                  "k1", "k2", "k3", "k4", "p1", "p2", "camera_model")
_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
SPLIT_ORDER = ("train", "val", "test")


def _is_split_file(p: Path) -> bool:
    return p.name.startswith("transforms_") and p.stem != "transforms_present"


def find_transforms_files(path: Path, split: str) -> list[Path]:
    """The JSON file(s) to read for `split` (see module docstring)."""
    if path.is_file():
        return [path]
    if (path / "transforms.json").is_file():
        return [present_subset(path / "transforms.json")]
    found = {p.stem[len("transforms_"):]: p for p in sorted(path.glob("transforms_*.json")) if _is_split_file(p)}
    if not found:
        if (path / "transforms_present.json").is_file():
            return [path / "transforms_present.json"]
        raise FileNotFoundError(f"{path}: no transforms.json or transforms_<split>.json")
    if split == "all":
        return [found[s] for s in SPLIT_ORDER if s in found] + \
               [p for s, p in found.items() if s not in SPLIT_ORDER]
    if split not in found:
        raise FileNotFoundError(f"{path}: no transforms_{split}.json (found: "
                                f"{', '.join(p.name for p in found.values())})")
    return [found[split]]


def read_json(path: Path) -> dict:
    """Parses a JSON object; malformed JSON raises DataFormatError naming the file, line and column."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e})") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def _frames_of(meta: dict, path: Path, split: str, single_file: bool) -> list[dict]:
    if "frames" not in meta or not isinstance(meta["frames"], list):
        raise DataFormatError(f"{path}: missing 'frames' list")
    if not single_file or "test_frames" not in meta:
        if single_file and split == "test":
            raise DataFormatError(f"{path}: split='test' requested but the file has no 'test_frames'")
        return list(meta["frames"])
    tests = meta["test_frames"]
    if not isinstance(tests, list):
        raise DataFormatError(f"{path}: 'test_frames' must be a list")
    by_split = {"train": meta["frames"], "test": tests, "all": meta["frames"] + tests}
    if split not in by_split:
        raise DataFormatError(f"{path}: unknown split {split!r} for a nerfstudio file (train, test or all)")
    return list(by_split[split])


def _num(value, path: Path, where: str, key: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataFormatError(f"{path}: {where}: {key} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise DataFormatError(f"{path}: {where}: {key} must be finite, got {v}")
    return v


def _resolve(rel: str, variants: list[Path]) -> Path | None:
    """First existing file among `variants` / rel, trying the name as is, with an image suffix added,
    then with its image suffix replaced by another (a downscaled copy saved as .png or .jpg)."""
    for folder in variants:
        p = folder / rel
        if p.is_file():
            return p
        for s in _SUFFIXES:
            q = p.with_name(p.name + s)
            if q.is_file():
                return q
        if p.suffix in _SUFFIXES:
            for s in _SUFFIXES:
                q = p.with_suffix(s)
                if q.is_file():
                    return q
    return None


def _camera(frame: dict, meta: dict, path: Path, where: str):
    """(K or None, calib_size or None, intrinsics_fn or None, Distortion or None) of one frame."""
    get = lambda k: frame.get(k, meta.get(k))  # noqa: E731
    num = lambda k: None if get(k) is None else _num(get(k), path, where, k)  # noqa: E731
    fl_x, fl_y, cx, cy, w, h = (num(k) for k in ("fl_x", "fl_y", "cx", "cy", "w", "h"))
    ax, ay = num("camera_angle_x"), num("camera_angle_y")
    model = str(get("camera_model") or "OPENCV").upper()
    if model not in ("OPENCV", "OPENCV_FISHEYE", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        raise DataFormatError(f"{path}: {where}: camera_model {model!r} is not supported "
                              f"(OPENCV, OPENCV_FISHEYE or a pinhole/radial model)")
    ks = [num(k) or 0.0 for k in ("k1", "k2", "k3", "k4")]
    ps = [num(k) or 0.0 for k in ("p1", "p2")]
    if model == "OPENCV_FISHEYE":
        dist = Distortion("fisheye", tuple(ks))
    else:
        if ks[3]:
            raise DataFormatError(f"{path}: {where}: k4 given for camera_model {model} "
                                  f"(only OPENCV_FISHEYE has k4)")
        dist = Distortion("radial_tangential", tuple(ks[:3]), tuple(ps))
    dist = None if dist.is_identity else dist
    if fl_x is not None:
        fy = fl_x if fl_y is None else fl_y
        if fl_x <= 0 or fy <= 0:
            raise DataFormatError(f"{path}: {where}: focal lengths must be positive (fl_x={fl_x}, fl_y={fy})")
        if w is not None and h is not None:
            K = intrinsics(fl_x, fy, w / 2 if cx is None else cx, h / 2 if cy is None else cy)
            return K, (int(round(w)), int(round(h))), None, dist
        return None, None, (lambda W, H: intrinsics(fl_x, fy, W / 2 if cx is None else cx,
                                                    H / 2 if cy is None else cy)), dist
    if ax is not None:
        if not 0 < ax < math.pi or (ay is not None and not 0 < ay < math.pi):
            raise DataFormatError(f"{path}: {where}: camera_angle_x/y must be in (0, pi) radians")

        def from_angles(W: int, H: int) -> np.ndarray:
            fx = 0.5 * W / math.tan(0.5 * ax)
            fy = fx if ay is None else 0.5 * H / math.tan(0.5 * ay)
            return intrinsics(fx, fy, W / 2 if cx is None else cx, H / 2 if cy is None else cy)

        return None, None, from_angles, dist
    raise DataFormatError(f"{path}: {where}: no intrinsics (need fl_x [+ w, h] or camera_angle_x)")


def load_transforms(path: Path, opts: LoadOptions) -> Scene:
    """Loads a transforms.json scene (see module docstring) as a Scene."""
    files = find_transforms_files(path, opts.split)
    entries = []  # (json path, meta, frame, index in its file)
    per_frame = False
    for jp in files:
        meta = read_json(jp)
        nerfstudio_splits = not _is_split_file(jp)  # transforms_<split>.json: one split each
        for i, fr in enumerate(_frames_of(meta, jp, opts.split, single_file=nerfstudio_splits)):
            if not isinstance(fr, dict):
                raise DataFormatError(f"{jp}: frame {i} is not an object")
            per_frame = per_frame or any(k in fr for k in INTRINSIC_KEYS)
            entries.append((jp, meta, fr, i))
    if not entries:
        raise DataFormatError(f"{files[0]}: no frames")
    entries = _drop_repeated(entries)
    want = opts.downscale
    frames: list[FrameSpec] = []
    skipped: list[str] = []
    variant_scale: float | None = None  # in-memory scale, fixed by the first frame found
    fixed_factor: int | None = None     # folder factor, fixed by the first frame found
    finder = _ImageFinder()
    for jp, meta, fr, i in [entries[k] for k in pick_views(len(entries), opts.max_views)]:
        where = f"frame {i}"
        if "file_path" not in fr or "transform_matrix" not in fr:
            raise DataFormatError(f"{jp}: {where}: needs 'file_path' and 'transform_matrix'")
        try:
            c2w = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise DataFormatError(f"{jp}: {where}: transform_matrix is not a numeric matrix") from None
        if c2w.shape not in ((4, 4), (3, 4)):
            raise DataFormatError(f"{jp}: {where}: transform_matrix must be a 4x4 (or 3x4) matrix, "
                                  f"got shape {list(c2w.shape)}")
        if not np.isfinite(c2w).all():
            raise DataFormatError(f"{jp}: {where}: transform_matrix has non-finite entries (NaN or inf)")
        if abs(np.linalg.det(c2w[:3, :3])) < 1e-6:
            raise DataFormatError(f"{jp}: {where}: transform_matrix has a singular rotation block "
                                  f"(det {np.linalg.det(c2w[:3, :3]):.3g}); expected a camera-to-world pose")
        K, calib, fn, dist = _camera(fr, meta, jp, where)
        base = jp.parent
        rel = _checked_rel(fr["file_path"], jp, where, "file_path", opts)
        if opts.images_dir:  # explicit folder: a trailing _N in its name is its downscale factor
            factor = folder_factor(base, base / opts.images_dir)
            if (want or factor) < factor:
                raise DataFormatError(f"{base / opts.images_dir}: folder is downscaled by {factor}, cannot "
                                      f"serve downscale={want}")
            img, scale = _resolve(rel.name, [base / opts.images_dir]), (want or factor) / factor
        else:
            img, factor = finder.find(base, rel, want, fixed_factor)
            scale = (want or factor) / factor
        if img is not None and fn is not None and factor > 1:
            # intrinsics without w, h refer to the full-resolution image: evaluate there, then scale
            fn = (lambda W, H, fn=fn, f=factor: scale_intrinsics(fn(W * f, H * f), 1.0 / f, 1.0 / f))
        if img is None:
            skipped.append(str(base / rel))
            continue
        fixed_factor = factor
        variant_scale = scale
        mask = None
        if opts.masks and fr.get("mask_path"):
            mrel = str(_checked_rel(fr["mask_path"], jp, where, "mask_path", opts))
            mask = _resolve(mrel, [base, base.parent / "resized_anon_masks"])
            if mask is None:
                raise FileNotFoundError(f"{base / mrel}: mask file not found ({jp}: {where})")
        frames.append(FrameSpec(image=img, label=str(img), viewmat=opengl_c2w_to_viewmat(c2w), K=K,
                                calib_size=calib, intrinsics_fn=fn, distortion=dist, mask=mask))
    warn_skipped(skipped)
    if not frames:
        raise DataFormatError(f"{files[0]}: none of the {len(entries)} frames has an image file "
                              f"(first missing: {skipped[0] if skipped else '?'})")
    loaded = load_frames(frames, opts, scale=variant_scale or 1.0, per_frame_intrinsics=per_frame)
    points = colors = None
    ply = entries[0][1].get("ply_file_path")
    if opts.points and ply:
        pp = files[0].parent / _checked_rel(ply, files[0], "top level", "ply_file_path", opts)
        if pp.is_file():
            points, colors = read_ply_points(pp)
    folder = files[0].parent
    if folder.name == "nerfstudio":  # DL3DV <scene>/nerfstudio, ScanNet++ <scene>/dslr/nerfstudio
        folder = folder.parent.parent if folder.parent.name in ("dslr", "iphone") else folder.parent
    name = folder.name
    return make_scene(name, loaded, opts=opts, points=points, point_colors=colors)


def _checked_rel(value, jp: Path, where: str, key: str, opts: LoadOptions) -> Path:
    """A path entry of the JSON, refused when it leaves the JSON's folder (see module docstring)."""
    if not isinstance(value, str) or not value:
        raise DataFormatError(f"{jp}: {where}: {key} must be a non-empty string, got {value!r}")
    if not opts.allow_outside_paths and not inside_folder(jp.parent, value):
        raise DataFormatError(f"{jp}: {where}: {key} {value!r} points outside the scene folder "
                              f"{jp.parent} (absolute or '..'); pass allow_outside_paths=True to read it")
    return Path(value)


def _drop_repeated(entries: list) -> list:
    """Entries minus frames listed again (same folder and file_path; e.g. transforms_val.json
    repeating transforms_test.json); a repeat with another pose is dropped with a warning."""
    seen: dict[tuple[str, str], object] = {}
    out, conflicts = [], []
    for e in entries:
        jp, _, fr, i = e
        fp = fr.get("file_path") if isinstance(fr, dict) else None
        if not isinstance(fp, str):
            out.append(e)
            continue
        key = (str(jp.parent), os.path.normpath(fp))
        if key in seen:
            if seen[key] != fr.get("transform_matrix"):
                conflicts.append(f"{jp.name}: frame {i} ({fp})")
            continue
        seen[key] = fr.get("transform_matrix")
        out.append(e)
    if conflicts:
        warnings.warn(f"{len(conflicts)} frame(s) listed twice with different poses, the first kept: "
                      f"{', '.join(conflicts[:3])}", stacklevel=3)
    return out


class _ImageFinder:
    """Where a frame's image lies, by downscale factor (see module docstring), with the folder scans
    cached per folder."""

    def __init__(self) -> None:
        self._folders: dict[Path, dict[int, Path]] = {}
        self._siblings: dict[Path, dict[int, Path]] = {}

    def _images_n(self, base: Path) -> dict[int, Path]:
        if base not in self._folders:
            self._folders[base] = {n: f for n, f in image_folders(base, ("images",)).items() if n > 1}
        return self._folders[base]

    def _sibling_n(self, folder: Path) -> dict[int, Path]:
        """{N: <folder>_N} next to `folder` (nerfstudio-style downscaled copy of any image folder)."""
        if folder not in self._siblings:
            found: dict[int, Path] = {}
            parent = folder.parent
            if parent.is_dir() and folder.name not in ("", ".", ".."):
                for p in parent.iterdir():
                    m = re.fullmatch(rf"{re.escape(folder.name)}_(\d+)", p.name)
                    if m and int(m.group(1)) > 1 and p.is_dir():
                        found[int(m.group(1))] = p
            self._siblings[folder] = found
        return self._siblings[folder]

    def candidates(self, base: Path, rel: Path) -> dict[int, list[Path]]:
        """{factor: [folder to resolve `name` in, ...]} -> expressed as full candidate paths."""
        out: dict[int, list[Path]] = {1: [base / rel, base.parent / "resized_images" / rel]}
        parts = [q for q in rel.parts if q not in ("", ".")]
        if len(parts) > 1:
            for n, sib in self._sibling_n(base / rel.parent).items():
                out.setdefault(n, []).append(sib / rel.name)
        for n, folder in self._images_n(base).items():
            c = out.setdefault(n, [])
            if len(parts) > 1:  # sub-path kept where file names would collide: the most specific first
                c.extend([folder.joinpath(*parts), folder.joinpath(*parts[1:])])
            c.append(folder / rel.name)
        return out

    def find(self, base: Path, rel: Path, want: int | None, fixed: int | None) -> tuple[Path | None, int]:
        """(image file or None, its folder factor) for downscale `want` (None: largest images)."""
        cands = self.candidates(base, rel)
        if fixed is not None:
            order = [fixed] if fixed in cands else []
        elif want is None:
            order = sorted(cands)
        else:
            order = sorted((n for n in cands if n <= want), reverse=True)
        for n in order:
            for c in cands[n]:
                got = _resolve(c.name, [c.parent])
                if got is not None:
                    return got, n
        return None, (fixed or 1)
