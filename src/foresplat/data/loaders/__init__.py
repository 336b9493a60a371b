"""Loaders for real multi-view data: `load_scene(path, format="auto", **options) -> Scene`.

Formats (name: what `detect_format` looks for, first match wins):
    transforms   transforms.json or transforms_<split>.json (NeRF Blender, instant-ngp, nerfstudio,
                 DL3DV-10K, ScanNet++ dslr/nerfstudio)
    co3d         frame_annotations.jgz here or in the parent folder (CO3Dv2)
    tartanair    pose_left.txt + image_left/ (or one level down)
    blendedmvs   cams/*_cam.txt + blended_images/ (MVSNet layout)
    gtasfm       *.hdf5 sequences, or poses.txt + intrinsics.txt + color/ (GTA-SfM)
    idr          cameras_sphere.npz / cameras.npz / cameras_large.npz (IDR, NeuS, DTU)
    colmap       images.bin/txt in sparse/0, sparse, ., colmap/sparse/0 or distorted/sparse/0
    llff         poses_bounds.npy (or poses_bounds_present.npy)
    strecha      <image>.camera files in gt_dense_cameras/, cameras/, *_cameras/ or the folder (EPFL
                 / Strecha benchmark: K, R camera-to-world, camera centre, image size)
    middlebury   <name>_par.txt (Middlebury MVS: K, R, t per image, x = K [R | t] X)
Shared conventions (common.py): images may ship only downscaled, as images_N/ (or a folder named by
downscale.json), with pixel intrinsics written for the full size: loaders read the largest images
present and scale the intrinsics to the size read (`image_folders`). A derived subset pose file
`<stem>_present<suffix>` beside the original (poses_bounds_present.npy, transforms_present.json,
<name>_par_present.txt) lists exactly the frames whose images are there and is preferred.
Every loader returns a validated Scene in foresplat's convention (OpenCV world-to-camera, pixel
K with centres at +0.5, images float32 [V, H, W, 3] in [0, 1]); the per-format conversions live
in `conventions.py`. Options: `LoadOptions` (downscale, images_dir, max_views, background, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from foresplat.data.loaders.blendedmvs import load_blendedmvs
from foresplat.data.loaders.co3d import load_co3d
from foresplat.data.loaders.colmap import find_colmap_model, load_colmap
from foresplat.data.loaders.common import DataFormatError, LoadOptions
from foresplat.data.loaders.gtasfm import load_gtasfm
from foresplat.data.loaders.idr import CAMERA_FILES as IDR_CAMERA_FILES
from foresplat.data.loaders.idr import load_idr
from foresplat.data.loaders.llff import load_llff
from foresplat.data.loaders.middlebury import PAR_SUFFIX, find_par_files, load_middlebury
from foresplat.data.loaders.strecha import CAMERA_SUFFIX, find_camera_dir, load_strecha
from foresplat.data.loaders.tartanair import load_tartanair
from foresplat.data.loaders.transforms import load_transforms
from foresplat.data.scene import Scene

LOADERS: dict[str, Callable[[Path, LoadOptions], Scene]] = {
    "transforms": load_transforms,
    "co3d": load_co3d,
    "tartanair": load_tartanair,
    "blendedmvs": load_blendedmvs,
    "gtasfm": load_gtasfm,
    "idr": load_idr,
    "colmap": load_colmap,
    "llff": load_llff,
    "strecha": load_strecha,
    "middlebury": load_middlebury,
}
FORMATS = tuple(LOADERS)

__all__ = ["load_scene", "detect_format", "LoadOptions", "DataFormatError", "FORMATS", "LOADERS"]


def _detect_file(p: Path) -> str | None:
    name = p.name
    if p.suffix == ".json":
        return "transforms"
    if name == "frame_annotations.jgz":
        return "co3d"
    if p.suffix in (".hdf5", ".h5"):
        return "gtasfm"
    if name in IDR_CAMERA_FILES:
        return "idr"
    if name in ("poses_bounds.npy", "poses_bounds_present.npy"):
        return "llff"
    if name.endswith(PAR_SUFFIX) or name.endswith("_par_present.txt"):
        return "middlebury"
    if name.endswith(CAMERA_SUFFIX):
        return "strecha"
    return None


def detect_format(path: str | Path) -> str:
    """The format name of a scene folder (or of a format's main file); see the module docstring.

    Raises FileNotFoundError for a missing path and DataFormatError when nothing matches.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_file():
        fmt = _detect_file(p)
        if fmt is None:
            raise DataFormatError(f"{p}: not a known scene file (transforms*.json, frame_annotations.jgz, "
                                  f"*.hdf5, {', '.join(IDR_CAMERA_FILES)}, poses_bounds.npy, *_par.txt, *.camera)")
        return fmt
    if (p / "transforms.json").is_file() or any(p.glob("transforms_*.json")):
        return "transforms"
    if (p / "frame_annotations.jgz").is_file() or (p.parent / "frame_annotations.jgz").is_file():
        return "co3d"
    if ((p / "pose_left.txt").is_file() and (p / "image_left").is_dir()) or any(p.glob("*/pose_left.txt")):
        return "tartanair"
    if (p / "cams").is_dir() and any((p / "cams").glob("*_cam.txt")):
        return "blendedmvs"
    if any(p.glob("*.hdf5")) or ((p / "poses.txt").is_file() and (p / "intrinsics.txt").is_file()):
        return "gtasfm"
    if any((p / n).is_file() for n in IDR_CAMERA_FILES):
        return "idr"
    if find_colmap_model(p) is not None:
        return "colmap"
    if (p / "poses_bounds.npy").is_file() or (p / "poses_bounds_present.npy").is_file():
        return "llff"
    if find_par_files(p):
        return "middlebury"
    if find_camera_dir(p) is not None:
        return "strecha"
    raise DataFormatError(
        f"{p}: cannot tell the scene format: found none of transforms.json / transforms_<split>.json, "
        f"frame_annotations.jgz, pose_left.txt, cams/*_cam.txt, *.hdf5 or poses.txt+intrinsics.txt, "
        f"{' / '.join(IDR_CAMERA_FILES)}, a COLMAP model (sparse/0/images.bin), poses_bounds.npy, "
        f"<name>_par.txt (Middlebury), <image>.camera files (Strecha)")


def load_scene(path: str | Path, format: str = "auto", *, options: LoadOptions | None = None,
               **kwargs) -> Scene:
    """Loads a scene folder (or file) as a validated Scene.

    format: "auto" (`detect_format`) or one of FORMATS. Options are LoadOptions fields, given as
    keywords (`downscale=4, max_views=16, background=(0, 0, 0), ...`) or as `options=`; keywords
    override `options`. Unknown option names raise TypeError. Missing files raise
    FileNotFoundError, malformed or inconsistent data DataFormatError (a ValueError); both name
    the file and the problem.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if options is not None:
        base = {f: getattr(options, f) for f in options.__dataclass_fields__}
        base.update(kwargs)
        kwargs = base
    opts = LoadOptions.from_kwargs(**kwargs)
    fmt = detect_format(p) if format == "auto" else format
    if fmt not in LOADERS:
        raise ValueError(f"unknown format {format!r}; expected 'auto' or one of {', '.join(FORMATS)}")
    return LOADERS[fmt](p, opts)
