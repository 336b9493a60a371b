"""What every loader shares: options, errors, image/mask reading, folder choice and Scene assembly.

A format loader turns its files into a list of `FrameSpec` (an image source plus its camera in
foresplat's convention) and hands it to `load_frames`, which reads the images in parallel with
PIL, composites alpha onto the background, undistorts, downsizes and checks sizes; `make_scene`
then builds the validated `Scene` (float32 tensors). Every error names the file and the problem.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from foresplat.cameras import Cameras
from foresplat.data.loaders.distortion import Distortion, undistort_image
from foresplat.data.loaders.geometry import camera_centres, optical_axes_focus
from foresplat.data.scene import Scene

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DataFormatError(ValueError):
    """A scene folder or file is malformed or inconsistent; the message names the file and the problem."""


@dataclass
class LoadOptions:
    """Options shared by all loaders (`load_scene(path, **options)`); a format ignores what it lacks."""

    downscale: int | None = None
    """Resolution factor relative to the format's full-resolution calibration: uses a pre-downscaled
    folder (images_N, image_N) when there is one, else resizes in memory (area filter). None: the
    largest images available."""
    images_dir: str | None = None
    """Images folder relative to the scene folder, overriding the format's default (a trailing _N in
    its name is read as its downscale factor)."""
    max_views: int | None = None
    """Keep at most this many views, evenly spaced over the sorted sequence (chosen before reading)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """RGB in [0, 1] that images with an alpha channel are composited onto (and undistortion fills)."""
    split: str = "all"
    """transforms: which transforms_<split>.json when there is no transforms.json ("all", the
    default: every split, frames listed twice (e.g. val = test) read once); nerfstudio "frames"
    (train), "test_frames" (test) or both (all)."""
    sequence: str | None = None
    """CO3D sequence name, TartanAir trajectory folder or GTA-SfM .hdf5 name, when the path holds several."""
    undistort: bool = True
    """Undistort images whose camera has distortion coefficients (else the distortion is ignored)."""
    normalize: bool = False
    """IDR/NeuS: express cameras in the scale_mat frame (object inside the unit sphere)."""
    masks: bool = True
    """Load foreground masks when the format has them (alpha channels count as masks)."""
    depths: bool = True
    """Load depth maps when the format has them (converted to camera z-depth, 0 = unknown)."""
    points: bool = True
    """Load sparse points (COLMAP points3D) when available."""
    near: float | None = None
    """Override the near bound (else from the format, depths, points, or the camera layout)."""
    far: float | None = None
    """Override the far bound."""
    workers: int = 4
    """Threads decoding images (PIL releases the GIL while decoding)."""
    progress: bool = False
    """Show a tqdm progress bar while reading images."""
    allow_outside_paths: bool = False
    """transforms: read `file_path` / `mask_path` / `ply_file_path` entries that are absolute or
    leave the scene folder with '..' (refused by default: a scene file must not read arbitrary files)."""

    def validate(self) -> "LoadOptions":
        """Checks value ranges; raises ValueError naming the option."""
        if self.downscale is not None and (int(self.downscale) != self.downscale or self.downscale < 1):
            raise ValueError(f"downscale must be a positive integer, got {self.downscale!r}")
        if self.max_views is not None and (int(self.max_views) != self.max_views or self.max_views < 1):
            raise ValueError(f"max_views must be a positive integer, got {self.max_views!r}")
        bg = tuple(self.background)
        if len(bg) != 3 or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in bg):
            raise ValueError(f"background must be 3 numbers in [0, 1], got {self.background!r}")
        for name in ("near", "far"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        if self.near is not None and self.far is not None and self.near >= self.far:
            raise ValueError(f"need near < far, got near={self.near}, far={self.far}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        return self

    @classmethod
    def from_kwargs(cls, **kwargs) -> "LoadOptions":
        """LoadOptions from keyword arguments; an unknown name raises TypeError listing the valid ones."""
        names = {f.name for f in fields(cls)}
        bad = sorted(set(kwargs) - names)
        if bad:
            raise TypeError(f"unknown load option(s) {', '.join(bad)}; valid: {', '.join(sorted(names))}")
        return cls(**kwargs).validate()


@dataclass
class FrameSpec:
    """One view before reading: an image source and its camera in foresplat's convention.

    image         a file Path, or a callable returning the encoded image bytes (e.g. from HDF5)
    label         name used in messages (the file path, or "seq.hdf5:image_3")
    viewmat       [4, 4] OpenCV world-to-camera, float64
    K             [3, 3] pixel intrinsics at `calib_size`, or at the stored image's size when
                  calib_size is None; None: computed by `intrinsics_fn(W, H)` from the stored size
    distortion    lens distortion of the stored image (undistorted when LoadOptions.undistort)
    mask          mask file or callable -> [H, W] in [0, 1] at the stored size (1 = foreground)
    depth         callable -> [H, W] camera z-depth at the stored size (0 / non-finite = unknown)
    """

    image: object
    label: str
    viewmat: np.ndarray
    K: np.ndarray | None = None
    calib_size: tuple[int, int] | None = None
    intrinsics_fn: Callable[[int, int], np.ndarray] | None = None
    distortion: Distortion | None = None
    mask: object = None
    depth: Callable[[], np.ndarray] | None = None


@dataclass
class LoadedFrames:
    """Images and cameras after reading (all at one size): numpy float32 arrays and float64 cameras."""

    images: np.ndarray          # [V, H, W, 3]
    Ks: np.ndarray              # [V, 3, 3]
    viewmats: np.ndarray        # [V, 4, 4]
    masks: np.ndarray | None    # [V, H, W]
    depths: np.ndarray | None   # [V, H, W]
    labels: list[str]


def pick_views(count: int, max_views: int | None) -> list[int]:
    """Indices of at most `max_views` of `count` views, evenly spaced and including the first and last."""
    if max_views is None or max_views >= count:
        return list(range(count))
    if max_views == 1:
        return [0]
    return sorted({int(round(i * (count - 1) / (max_views - 1))) for i in range(max_views)})


def list_images(folder: Path) -> list[Path]:
    """Image files in `folder` (known suffixes, case-insensitive, no hidden files), sorted by name."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: images folder not found")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


DOWNSCALE_JSON = "downscale.json"


def read_downscale_json(root: Path) -> tuple[Path, int] | None:
    """(image folder, factor N) named by `root`/downscale.json ({"factor": N, "image_dir": "images_N"},
    written next to scenes whose images were downscaled after the poses: pixel intrinsics in the pose
    files are at N times the stored size), or None when there is no such file. A malformed file
    raises DataFormatError naming it."""
    f = root / DOWNSCALE_JSON
    if not f.is_file():
        return None
    import json

    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
        factor, image_dir = meta["factor"], meta["image_dir"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{f}: expected a JSON object with 'factor' (int >= 1) and 'image_dir' "
                              f"({type(e).__name__}: {e})") from None
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1 or not isinstance(image_dir, str):
        raise DataFormatError(f"{f}: 'factor' must be an integer >= 1 and 'image_dir' a folder name, "
                              f"got factor={factor!r}, image_dir={image_dir!r}")
    folder = root / image_dir
    if Path(image_dir).is_absolute() or ".." in Path(image_dir).parts:
        raise DataFormatError(f"{f}: image_dir {image_dir!r} must be a folder inside the scene")
    return folder, factor


def image_folders(root: Path, bases: Sequence[str] = ("images",)) -> dict[int, Path]:
    """The image folders under `root` by downscale factor: `base` (N = 1) and the pre-downscaled
    `base_N` (N; the LLFF / nerfstudio / 3DGS convention) for each name in `bases` (the first
    base wins per factor), and the folder named by downscale.json with its factor. Pixel intrinsics
    written for the full-resolution images are divided by N for folder N. The one mechanism every
    loader uses (through `find_image_folder`, or directly for per-frame paths like transforms.json)."""
    avail: dict[int, Path] = {}
    if not root.is_dir():
        return avail
    entries = sorted(p for p in root.iterdir() if p.is_dir())
    for base in bases:
        if (root / base).is_dir():
            avail.setdefault(1, root / base)
        for p in entries:
            m = re.fullmatch(rf"{re.escape(base)}_(\d+)", p.name)
            if m and int(m.group(1)) >= 1:
                avail.setdefault(int(m.group(1)), p)
    named = read_downscale_json(root)
    if named is not None and named[0].is_dir():
        folder, factor = named
        stale = [n for n, p in avail.items() if p == folder and n != factor]
        for n in stale:  # downscale.json knows the folder's factor better than its name
            del avail[n]
        avail.setdefault(factor, folder)
    return avail


def folder_factor(root: Path, folder: Path) -> int:
    """Downscale factor of an image folder: downscale.json's when it names this folder, else a
    trailing _N in the folder name, else 1."""
    named = read_downscale_json(root) if root.is_dir() else None
    if named is not None and named[0] == folder:
        return named[1]
    m = re.search(r"_(\d+)$", folder.name)
    return int(m.group(1)) if m and int(m.group(1)) >= 1 else 1


def choose_factor(avail: Sequence[int], downscale: int | None, where: Path) -> int:
    """The folder factor to read for a requested downscale: the largest N <= downscale, or with
    downscale None the smallest N available (the largest images). DataFormatError when every
    folder is downscaled by more than requested."""
    if not avail:
        raise FileNotFoundError(f"{where}: no images folder found")
    want = downscale or min(avail)
    usable = [f for f in avail if f <= want]
    if not usable:
        raise DataFormatError(f"{where}: downscale={want} requested but the images available are "
                              f"downscaled by more ({', '.join(f'x{f}' for f in sorted(avail))})")
    return max(usable)


def find_image_folder(root: Path, bases: Sequence[str], opts: LoadOptions) -> tuple[Path, int, float]:
    """Chooses the images folder under `root` for the requested downscale.

    Looks for `base` (factor 1), `base_N` (factor N) and downscale.json's folder (`image_folders`);
    with opts.downscale = D picks the largest factor N <= D, with D None the smallest available
    (so a scene shipped only as images_N/ loads as it is). Returns (folder, N, D / N): the
    remaining factor is applied in memory. opts.images_dir overrides the search.
    """
    if opts.images_dir:
        folder = root / opts.images_dir
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: images folder not found (images_dir={opts.images_dir!r})")
        factor = folder_factor(root, folder)
    else:
        avail = image_folders(root, bases)
        if not avail:
            names = ", ".join(f"{b}/ or {b}_N/" for b in bases)
            raise FileNotFoundError(f"{root}: no images folder found (looked for {names})")
        factor = choose_factor(list(avail), opts.downscale, root)
        folder = avail[factor]
    want = opts.downscale or factor
    if want < factor:
        raise DataFormatError(f"{folder}: folder is downscaled by {factor}, cannot serve downscale={want}")
    return folder, factor, want / factor


def present_subset(path: Path) -> Path:
    """`<stem>_present<suffix>` beside a pose file when it exists, else the file itself.

    Scenes whose source lacked some images ship a derived subset pose file (poses_bounds_present.npy,
    transforms_present.json, <name>_par_present.txt) listing exactly the frames whose images are
    there, next to the original; loaders prefer it."""
    sub = path.with_name(f"{path.stem}_present{path.suffix}")
    return sub if sub.is_file() else path


def inside_folder(root: Path, rel: str | Path) -> bool:
    """Whether a relative path from a scene file stays inside `root` (not absolute, no '..' that
    climbs out; symlinks are not followed)."""
    p = Path(str(rel))
    if p.is_absolute() or str(rel).startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", str(rel)):
        return False
    depth = 0
    for part in re.split(r"[\\/]+", str(rel)):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


def read_rgb(source: object, label: str, background: Sequence[float]) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads an image -> (rgb [H, W, 3] float32 in [0, 1], alpha [H, W] or None).

    Alpha (RGBA, LA, palette transparency) is composited onto `background`. 16-bit greyscale is
    scaled by 1/65535. A missing file raises FileNotFoundError, an unreadable or truncated one
    DataFormatError, both naming `label`.
    """
    im = _open_image(source, label)
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        g = np.asarray(im, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(g, 0, 1)[..., None], 3, axis=-1), None
    if mode == "F":
        g = np.asarray(im, dtype=np.float32)
        return np.repeat(np.clip(g, 0, 1)[..., None], 3, axis=-1), None
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        # per-plane float math on contiguous bands (several times faster than strided HWC slicing)
        bands = (im if mode == "RGBA" else im.convert("RGBA")).split()
        alpha = np.asarray(bands[3]).astype(np.float32)
        alpha *= 1.0 / 255.0
        rgb = np.empty(alpha.shape + (3,), np.float32)
        for i in range(3):
            ch = np.asarray(bands[i]).astype(np.float32)
            ch *= 1.0 / 255.0
            ch -= background[i]
            ch *= alpha
            ch += background[i]  # = c * alpha + bg * (1 - alpha)
            rgb[..., i] = ch
        return rgb, alpha
    rgb = np.asarray(im if mode == "RGB" else im.convert("RGB")).astype(np.float32)
    rgb *= 1.0 / 255.0
    return rgb, None


def read_mask(source: object, label: str) -> np.ndarray:
    """Reads a mask image (or calls a mask source) -> [H, W] float32 in [0, 1] (1 = foreground)."""
    if callable(source) and not isinstance(source, Path):
        m = np.asarray(source(), dtype=np.float32)
        if m.ndim != 2:
            raise DataFormatError(f"{label}: mask must be [H, W], got shape {list(m.shape)}")
        return np.clip(np.nan_to_num(m), 0.0, 1.0)
    im = _open_image(source, label)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        m = np.asarray(im, dtype=np.float32) / 65535.0
    elif im.mode == "F":
        m = np.asarray(im, dtype=np.float32)
    else:
        m = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return np.clip(m, 0.0, 1.0)


def _open_image(source: object, label: str) -> Image.Image:
    if isinstance(source, Path):
        if not source.is_file():
            raise FileNotFoundError(f"{label}: image file not found")
        opener = source
    else:
        try:
            opener = io.BytesIO(source())  # type: ignore[operator]
        except Exception as e:  # a broken container entry
            raise DataFormatError(f"{label}: cannot read image data ({type(e).__name__}: {e})") from None
    try:
        im = Image.open(opener)
        im.load()  # decodes now, so truncated files fail here
    except Exception as e:
        raise DataFormatError(f"{label}: cannot read image ({type(e).__name__}: {e})") from None
    return im


def read_npy(path: Path) -> np.ndarray:
    """A .npy array (no pickles); a missing or unreadable file raises naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise DataFormatError(f"{path}: cannot read .npy ({type(e).__name__}: {e})") from None


def resize_area(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-filter (box average) resize of [H, W] or [H, W, C] float arrays to width x height."""
    if x.shape[1] == width and x.shape[0] == height:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]
    if width <= x.shape[1] and height <= x.shape[0]:
        t = F.interpolate(t, size=(height, width), mode="area")
    else:
        t = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    t = t[0, 0] if x.ndim == 2 else t[0].permute(1, 2, 0)
    return t.numpy()


def resize_nearest(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize of [H, W] arrays (depth maps: no mixing across edges)."""
    if x.shape[1] == width and x.shape[0] == height:
        return x
    rows = np.minimum(((np.arange(height) + 0.5) * x.shape[0] / height).astype(np.int64), x.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * x.shape[1] / width).astype(np.int64), x.shape[1] - 1)
    return x[rows][:, cols]


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K [3, 3] for an image resized by (sx, sy) (pixel edges scale, so centres at +0.5 stay consistent)."""
    K = np.array(K, dtype=np.float64)
    K[0] *= sx
    K[1] *= sy
    K[2] = (0.0, 0.0, 1.0)
    return K


def _load_one(frame: FrameSpec, opts: LoadOptions, scale: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One frame -> (rgb [h, w, 3], K [3, 3], mask [h, w] or None, depth [h, w] or None) after intrinsics
    scaling to the stored size, undistortion and the in-memory downscale by `scale`."""
    rgb, alpha = read_rgb(frame.image, frame.label, opts.background)
    H, W = rgb.shape[:2]
    if frame.K is not None:
        K = np.asarray(frame.K, dtype=np.float64)
        if frame.calib_size is not None and tuple(frame.calib_size) != (W, H):
            cw, ch = frame.calib_size
            sx, sy = W / cw, H / ch
            if abs(sx / sy - 1.0) > 0.01:
                raise DataFormatError(f"{frame.label}: image is {W}x{H} but its calibration is for "
                                      f"{cw}x{ch} (a different aspect ratio)")
            K = scale_intrinsics(K, sx, sy)
    elif frame.intrinsics_fn is not None:
        K = np.asarray(frame.intrinsics_fn(W, H), dtype=np.float64)
    else:
        raise DataFormatError(f"{frame.label}: no intrinsics for this frame")
    mask = None
    if opts.masks and frame.mask is not None:
        mlabel = str(frame.mask) if isinstance(frame.mask, Path) else f"{frame.label} (mask)"
        mask = read_mask(frame.mask, mlabel)
        if mask.shape != (H, W):
            mh, mw = mask.shape
            if abs((mw / W) / (mh / H) - 1.0) > 0.01:
                raise DataFormatError(f"{mlabel}: mask is {mw}x{mh} but its image {frame.label} is {W}x{H}")
            mask = resize_area(mask, W, H)  # e.g. full-resolution masks next to images_N
    elif opts.masks and alpha is not None:
        mask = alpha
    depth = None
    if opts.depths and frame.depth is not None:
        depth = np.asarray(frame.depth(), dtype=np.float32)
        if depth.ndim != 2 or abs((depth.shape[1] / W) / (depth.shape[0] / H) - 1.0) > 0.01:
            raise DataFormatError(f"{frame.label}: depth map has shape {list(depth.shape)} but the image "
                                  f"is {W}x{H}")
        depth = resize_nearest(depth, W, H)
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    if opts.undistort and frame.distortion is not None and not frame.distortion.is_identity:
        rgb, _ = undistort_image(rgb, K, frame.distortion, fill=np.asarray(opts.background))
        if mask is not None:
            mask = undistort_image(mask[..., None], K, frame.distortion, fill=0.0)[0][..., 0]
        if depth is not None:
            depth = undistort_image(depth[..., None], K, frame.distortion, fill=0.0, mode="nearest")[0][..., 0]
    if scale != 1.0:
        nw, nh = max(1, int(round(W / scale))), max(1, int(round(H / scale)))
        rgb = resize_area(rgb, nw, nh)
        mask = None if mask is None else resize_area(mask, nw, nh)
        depth = None if depth is None else resize_nearest(depth, nw, nh)
        K = scale_intrinsics(K, nw / W, nh / H)
    return rgb.astype(np.float32), K, mask, depth


def load_frames(frames: Sequence[FrameSpec], opts: LoadOptions, *, scale: float = 1.0,
                per_frame_intrinsics: bool = False) -> LoadedFrames:
    """Reads `frames` (in order, `opts.workers` threads) into arrays of one size.

    scale: extra in-memory downscale factor (>= 1) applied after undistortion. Frames of different
    sizes are resized to the first frame's size (intrinsics follow, per axis) when each frame has
    its own intrinsics (`per_frame_intrinsics`), else DataFormatError names the odd file.
    """
    if not frames:
        raise DataFormatError("no frames to load")
    work = lambda f: _load_one(f, opts, scale)  # noqa: E731
    if opts.workers > 1 and len(frames) > 1:
        with ThreadPoolExecutor(max_workers=min(opts.workers, len(frames))) as ex:
            it = ex.map(work, frames)
            results = list(_progress(it, len(frames), opts.progress))
    else:
        results = [work(f) for f in _progress(frames, len(frames), opts.progress)]
    H, W = results[0][0].shape[:2]
    resized = []
    for i, (rgb, K, mask, depth) in enumerate(results):
        h, w = rgb.shape[:2]
        if (w, h) == (W, H):
            continue
        if not per_frame_intrinsics:
            raise DataFormatError(f"{frames[i].label}: image is {w}x{h} but {frames[0].label} is {W}x{H}; "
                                  f"images of different sizes need per-frame intrinsics")
        results[i] = (resize_area(rgb, W, H), scale_intrinsics(K, W / w, H / h),
                      None if mask is None else resize_area(mask, W, H),
                      None if depth is None else resize_nearest(depth, W, H))
        resized.append(frames[i].label)
    if resized:
        warnings.warn(f"{len(resized)} image(s) resized to {W}x{H} to match the first view "
                      f"(first: {resized[0]})", stacklevel=3)
    masks = [r[2] for r in results]
    depths = [r[3] for r in results]
    images = np.empty((len(results), H, W, 3), np.float32)
    for i, r in enumerate(results):
        images[i] = r[0]
    return LoadedFrames(
        images=images,
        Ks=np.stack([r[1] for r in results]),
        viewmats=np.stack([np.asarray(f.viewmat, dtype=np.float64) for f in frames]),
        masks=_stack_optional(masks, (H, W), 1.0),
        depths=_stack_optional(depths, (H, W), 0.0),
        labels=[f.label for f in frames],
    )


def _stack_optional(items: list, shape: tuple[int, int], fill: float) -> np.ndarray | None:
    """Stacks per-view arrays; views without one get `fill` (all-foreground mask / unknown depth)."""
    if all(x is None for x in items):
        return None
    out = np.empty((len(items),) + shape, np.float32)
    for i, x in enumerate(items):
        out[i] = fill if x is None else x
    return out


def _progress(it, total: int, enabled: bool):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc="reading images", unit="img")


def warn_skipped(skipped: list[str], what: str = "image file missing") -> None:
    """One warning for all skipped frames (count and the first few names)."""
    if skipped:
        shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        warnings.warn(f"{len(skipped)} frame(s) skipped ({what}): {shown}", stacklevel=3)


def estimate_bounds(viewmats: np.ndarray, Ks: np.ndarray | None = None, points: np.ndarray | None = None,
                    depths: np.ndarray | None = None) -> tuple[float, float]:
    """Near/far bounds when a format has none: from depth maps (0.5/99.5 percentiles of valid
    depths, x0.9 / x1.1), else from sparse points in front of the cameras (same percentiles), else
    from the camera layout: D = median distance of the cameras from the point nearest to all their
    optical axes (or from their mean position), near = 0.2 D, far = 2.5 D."""
    if depths is not None:
        d = depths[depths > 0]
        if d.size:
            if d.size > 2_000_000:
                d = d[:: d.size // 2_000_000 + 1]
            lo, hi = np.percentile(d, [0.5, 99.5])
            if hi > lo > 0:
                return float(0.9 * lo), float(1.1 * hi)
    v = np.asarray(viewmats, dtype=np.float64)
    if points is not None and len(points):
        X = np.asarray(points, dtype=np.float64)
        z = (np.einsum("vij,pj->vpi", v[:, :3, :3], X) + v[:, None, :3, 3])[..., 2]
        z = z[z > 0]
        if z.size:
            lo, hi = np.percentile(z, [0.5, 99.5])
            if hi > lo > 0:
                return float(0.9 * lo), float(1.1 * hi)
    c = camera_centres(v)
    focus = optical_axes_focus(v)
    if focus is None:
        focus = c.mean(0)
    dist = float(np.median(np.linalg.norm(c - focus, axis=-1)))
    if not math.isfinite(dist) or dist < 1e-6:
        return 0.01, 100.0
    return 0.2 * dist, 2.5 * dist


def make_scene(name: str, frames: LoadedFrames, *, opts: LoadOptions, points: np.ndarray | None = None,
               point_colors: np.ndarray | None = None, near: float | None = None,
               far: float | None = None) -> Scene:
    """Builds and validates the Scene (float32 tensors). Bounds: opts.near/far, else the given
    near/far, else `estimate_bounds`."""
    if near is None or far is None or not (0 < near < far):
        near, far = estimate_bounds(frames.viewmats, frames.Ks, points, frames.depths)
    near = opts.near if opts.near is not None else near
    far = opts.far if opts.far is not None else far
    if not near < far:
        raise DataFormatError(f"{name}: near bound {near} is not below far bound {far}")
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    H, W = frames.images.shape[1:3]
    cams = Cameras(t(frames.viewmats), t(frames.Ks), int(W), int(H))
    if points is not None and len(points) == 0:
        points = point_colors = None
    scene = Scene(images=t(frames.images), cameras=cams, name=name, masks=t(frames.masks),
                  depths=t(frames.depths), points=t(points), point_colors=t(point_colors),
                  near=float(near), far=float(far))
    return scene.validate()


def read_ply_points(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices of a point-cloud .ply -> (xyz [P, 3] float64, rgb [P, 3] in [0, 1] or None)."""
    from plyfile import PlyData

    try:
        ply = PlyData.read(str(path))
        v = ply["vertex"]
        xyz = np.stack([np.asarray(v[c], dtype=np.float64) for c in ("x", "y", "z")], -1)
    except Exception as e:
        raise DataFormatError(f"{path}: cannot read points from .ply ({type(e).__name__}: {e})") from None
    names = v.data.dtype.names or ()
    rgb = None
    if all(c in names for c in ("red", "green", "blue")):
        integer = np.asarray(v["red"]).dtype.kind in "ui"  # uint8 colours (0..255), else floats in [0, 1]
        rgb = np.stack([np.asarray(v[c], dtype=np.float64) for c in ("red", "green", "blue")], -1)
        rgb = np.clip(rgb / (255.0 if integer else 1.0), 0.0, 1.0)
    return xyz, rgb


MAX_TEXT_BYTES = 256 << 20


def read_text_file(path: Path, what: str = "text file") -> str:
    """A UTF-8 (or Latin-1) text file, refused when larger than MAX_TEXT_BYTES; errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise DataFormatError(f"{path}: {size} bytes is too large for a {what} (at most {MAX_TEXT_BYTES})")
    data = path.read_bytes()
    if b"\x00" in data:
        raise DataFormatError(f"{path}: not a {what} (binary data)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_floats(tokens: Sequence[str], path: Path, where: str, expected: int, what: str) -> np.ndarray:
    """`expected` finite numbers from text tokens -> float64 [expected]; otherwise DataFormatError
    naming the file, the place (`where`, e.g. "line 3") and what was expected (`what`)."""
    if len(tokens) != expected:
        raise DataFormatError(f"{path}: {where}: expected {expected} numbers ({what}), got {len(tokens)}")
    try:
        vals = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise DataFormatError(f"{path}: {where}: expected {expected} numbers ({what}), got "
                              f"non-numeric {bad[:40]!r}") from None
    if not np.isfinite(vals).all():
        raise DataFormatError(f"{path}: {where}: expected {expected} finite numbers ({what}), got NaN or inf")
    return vals


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def check_rotation(R: np.ndarray, path: Path, where: str, tol: float = 1e-3) -> None:
    """DataFormatError unless R [3, 3] is a proper rotation (orthonormal within `tol`, det +1)."""
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > tol or np.linalg.det(R) <= 0:
        raise DataFormatError(f"{path}: {where}: expected a rotation matrix (orthonormal, det +1), got "
                              f"|R^T R - I| = {err:.3g}, det = {np.linalg.det(R):.3g}")


def check_intrinsics(K: np.ndarray, path: Path, where: str) -> None:
    """DataFormatError unless K [3, 3] is upper triangular with positive focal lengths and K[2, 2] = 1."""
    if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(K[2, 2] - 1.0) > 1e-6 or np.abs(K[[1, 2, 2], [0, 0, 1]]).max() > 1e-9:
        raise DataFormatError(f"{path}: {where}: expected an intrinsic matrix [[fx, s, cx], [0, fy, cy], "
                              f"[0, 0, 1]] with fx, fy > 0, got {np.round(K, 4).tolist()}")
