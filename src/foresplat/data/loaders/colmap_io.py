"""The project's own readers for COLMAP model files (full models and partial ones without images.bin).

Used for every COLMAP file foresplat reads (full `sparse/0` models and LLFF/DTU releases that ship
only cameras.bin and points3D.bin). Binary readers check every count in a header against the
file size BEFORE allocating, so a truncated, random-bytes or empty file fails at once, in bounded
memory, with one line naming the file and what was expected (pycolmap grew to ~17 GB on such
files, issue 12). The layouts follow COLMAP's documentation:

cameras.bin   uint64 count, then per camera: int32 camera_id, int32 model_id, uint64 width,
              uint64 height, float64 params[num_params(model)]            (little endian)
points3D.bin  uint64 count, then per point: uint64 point3D_id, float64 xyz[3], uint8 rgb[3],
              float64 error, uint64 track_length, then track_length x (int32 image_id, int32 point2D_idx)
images.bin    uint64 count, then per image: int32 image_id, float64 qvec[4] (wxyz), float64 tvec[3],
              int32 camera_id, name (NUL-terminated), uint64 num_points2D, then num_points2D x
              (float64 x, float64 y, int64 point3D_id)
cameras.txt   "CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]" per line, '#' comments
images.txt    "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME" then a POINTS2D line, per image
points3D.txt  "POINT3D_ID X Y Z R G B ERROR TRACK[] as (IMAGE_ID, POINT2D_IDX)" per line
Every error names the file and what was wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foresplat.data.loaders.common import DataFormatError

# model_id -> (name, number of params), as in COLMAP's camera model registry.
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16), 12: ("SIMPLE_DIVISION", 4), 13: ("DIVISION", 5),
    14: ("SIMPLE_FISHEYE", 3), 15: ("FISHEYE", 4), 16: ("EUCM", 6), 17: ("EQUIRECTANGULAR", 2),
}
_NUM_PARAMS_BY_NAME = {name: n for name, n in CAMERA_MODELS.values()}


@dataclass
class ColmapCamera:
    """One COLMAP camera: model name, image size in pixels and its parameter vector."""

    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass
class SparsePoints:
    """COLMAP 3D points: xyz [P, 3] float64, rgb [P, 3] uint8, reprojection error [P], track length [P]."""

    xyz: np.ndarray
    rgb: np.ndarray
    error: np.ndarray
    track_length: np.ndarray
    ids: np.ndarray | None = None  # [P] point3D ids (binary files)


def read_cameras_binary(path: str | Path) -> dict[int, ColmapCamera]:
    """Reads cameras.bin (see module docstring) -> {camera_id: ColmapCamera}. The header's count is
    checked against the file size before anything is allocated."""
    path = Path(path)
    data = _read_bytes(path)
    count = _read_count(path, data, "cameras.bin", "camera", 24)  # a camera is 24 bytes + its parameters
    off = 8
    cams: dict[int, ColmapCamera] = {}
    try:
        for i in range(count):
            cid, mid, w, h = struct.unpack_from("<iiQQ", data, off)
            off += 24
            if mid not in CAMERA_MODELS:
                raise DataFormatError(f"{path}: camera {cid} has unknown model id {mid} (expected 0..17)")
            if not (0 < w < 1 << 20 and 0 < h < 1 << 20):
                raise DataFormatError(f"{path}: camera {cid}: image size {w}x{h} is not plausible "
                                      f"(expected 1..{1 << 20} pixels a side)")
            name, n = CAMERA_MODELS[mid]
            params = np.frombuffer(data, dtype="<f8", count=n, offset=off).astype(np.float64)
            off += 8 * n
            if not np.isfinite(params).all():
                raise DataFormatError(f"{path}: camera {cid}: parameters must be finite, got {params.tolist()}")
            cams[cid] = ColmapCamera(cid, name, int(w), int(h), params)
    except (struct.error, ValueError) as e:
        if isinstance(e, DataFormatError):
            raise
        raise DataFormatError(f"{path}: truncated or corrupt cameras.bin (camera {i} of {count}: {e})") from None
    if off != len(data):
        raise DataFormatError(f"{path}: {len(data) - off} unexpected trailing bytes after {count} cameras")
    return cams


def read_cameras_text(path: str | Path) -> dict[int, ColmapCamera]:
    """Reads cameras.txt -> {camera_id: ColmapCamera}."""
    path = Path(path)
    cams: dict[int, ColmapCamera] = {}
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        try:
            cid, model, w, h = int(tok[0]), tok[1], int(tok[2]), int(tok[3])
            params = np.array([float(t) for t in tok[4:]], dtype=np.float64)
        except (IndexError, ValueError):
            raise DataFormatError(f"{path}:{lineno}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...', "
                                  f"got {line[:80]!r}") from None
        if model not in _NUM_PARAMS_BY_NAME or len(params) != _NUM_PARAMS_BY_NAME[model]:
            raise DataFormatError(f"{path}:{lineno}: camera model {model!r} with {len(params)} parameters "
                                  f"is not a known COLMAP model")
        cams[cid] = ColmapCamera(cid, model, w, h, params)
    return cams


def read_points3d_binary(path: str | Path) -> SparsePoints:
    """Reads points3D.bin (see module docstring)."""
    path = Path(path)
    data = _read_bytes(path)
    head = np.dtype([("id", "<u8"), ("xyz", "<f8", 3), ("rgb", "u1", 3), ("error", "<f8"), ("track", "<u8")])
    size = head.itemsize  # 51 bytes, packed
    track_len = struct.Struct("<Q")
    count = _read_count(path, data, "points3D.bin", "point", size)
    offsets = np.empty(count, dtype=np.int64)
    off = 8
    n = len(data)
    for i in range(count):  # walk the variable-length records; only the track length is unpacked
        if off + size > n:
            raise DataFormatError(f"{path}: truncated points3D.bin (record {i} of {count} starts at byte "
                                  f"{off}, file has {n})")
        offsets[i] = off
        tl = track_len.unpack_from(data, off + size - 8)[0]
        if tl > (n - off - size) // 8:
            raise DataFormatError(f"{path}: truncated or corrupt points3D.bin (record {i} of {count} says "
                                  f"track length {tl}, {n - off - size} bytes remain)")
        off += size + 8 * tl
    if off != len(data):
        raise DataFormatError(f"{path}: truncated or corrupt points3D.bin (records end at byte {off}, "
                              f"file has {len(data)})")
    raw = np.frombuffer(data, dtype=np.uint8)
    rec = raw[offsets[:, None] + np.arange(size)].copy().view(head).reshape(count)
    return SparsePoints(rec["xyz"].astype(np.float64), rec["rgb"].astype(np.uint8),
                        rec["error"].astype(np.float64), rec["track"].astype(np.int64), rec["id"].astype(np.int64))


def read_points3d_text(path: str | Path) -> SparsePoints:
    """Reads points3D.txt."""
    path = Path(path)
    xyz, rgb, err, tl = [], [], [], []
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        try:
            xyz.append([float(t) for t in tok[1:4]])
            rgb.append([int(t) for t in tok[4:7]])
            err.append(float(tok[7]))
            tl.append((len(tok) - 8) // 2)
        except (IndexError, ValueError):
            raise DataFormatError(f"{path}:{lineno}: expected 'POINT3D_ID X Y Z R G B ERROR TRACK...', "
                                  f"got {line[:80]!r}") from None
        if len(xyz[-1]) != 3 or len(rgb[-1]) != 3:
            raise DataFormatError(f"{path}:{lineno}: expected 'POINT3D_ID X Y Z R G B ERROR TRACK...'")
    return SparsePoints(np.array(xyz, dtype=np.float64).reshape(-1, 3),
                        np.array(rgb, dtype=np.uint8).reshape(-1, 3), np.array(err), np.array(tl))


@dataclass
class ColmapImage:
    """One registered COLMAP image: its id, camera id, file name and world-to-camera pose
    (quaternion wxyz, translation), as images.bin/txt store it."""

    image_id: int
    camera_id: int
    name: str
    qvec: np.ndarray  # [4] wxyz
    tvec: np.ndarray  # [3]
    xys: np.ndarray | None = None          # [n, 2] keypoints (pixels, +0.5 centres) when read
    point3d_ids: np.ndarray | None = None  # [n] int64 id of each keypoint's 3D point, -1 for none


_IMAGE_HEAD = struct.Struct("<i4d3di")  # image_id, qvec (wxyz), tvec, camera_id: 64 bytes
_MAX_NAME = 4096


def read_images_binary(path: str | Path, points2d: bool = False) -> dict[int, ColmapImage]:
    """Reads images.bin -> {image_id: ColmapImage}. Layout: uint64 count, then per image int32
    image_id, float64 qvec[4] (wxyz), float64 tvec[3], int32 camera_id, the name (NUL-terminated),
    uint64 num_points2D and num_points2D x (float64 x, float64 y, int64 point3D_id), which are
    skipped unless `points2d` (then ColmapImage.xys / point3d_ids). Counts are checked against the
    file size before anything is allocated."""
    path = Path(path)
    data = _read_bytes(path)
    least = _IMAGE_HEAD.size + 1 + 8  # head, an empty name's NUL, the points2D count: 73 bytes
    count = _read_count(path, data, "images.bin", "image", least)
    off = 8
    images: dict[int, ColmapImage] = {}
    for i in range(count):
        if off + least > len(data):
            raise DataFormatError(f"{path}: truncated images.bin (image {i} of {count} starts at byte {off}, "
                                  f"file has {len(data)})")
        iid, qw, qx, qy, qz, tx, ty, tz, cid = _IMAGE_HEAD.unpack_from(data, off)
        off += _IMAGE_HEAD.size
        end = data.find(b"\x00", off, min(off + _MAX_NAME, len(data)))
        if end < 0:
            raise DataFormatError(f"{path}: image {i} of {count}: no NUL-terminated name within "
                                  f"{_MAX_NAME} bytes; truncated or corrupt images.bin")
        try:
            name = data[off:end].decode("utf-8")
        except UnicodeDecodeError:
            raise DataFormatError(f"{path}: image {i} of {count}: name is not UTF-8; corrupt images.bin") from None
        off = end + 1
        if off + 8 > len(data):
            raise DataFormatError(f"{path}: truncated images.bin (image {i} of {count}: no points2D count)")
        (npts,) = struct.unpack_from("<Q", data, off)
        off += 8
        if npts > (len(data) - off) // 24:
            raise DataFormatError(f"{path}: image {i} of {count} ({name!r}) says {npts} 2D points but only "
                                  f"{len(data) - off} bytes remain; truncated or corrupt images.bin")
        xys = ids = None
        if points2d:
            rec = np.frombuffer(data, dtype=np.dtype([("xy", "<f8", 2), ("id", "<i8")]), count=npts, offset=off)
            xys, ids = rec["xy"].astype(np.float64), rec["id"].astype(np.int64)
        off += 24 * npts
        q, t = np.array([qw, qx, qy, qz]), np.array([tx, ty, tz])
        _check_pose(path, f"image {iid} ({name!r})", q, t)
        if iid in images:
            raise DataFormatError(f"{path}: image id {iid} appears twice")
        images[iid] = ColmapImage(int(iid), int(cid), name, q, t, xys, ids)
    if off != len(data):
        raise DataFormatError(f"{path}: {len(data) - off} unexpected trailing bytes after {count} images")
    return images


def read_images_text(path: str | Path) -> dict[int, ColmapImage]:
    """Reads images.txt: per image a line "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME" followed by
    its POINTS2D line (which may be empty; skipped), '#' comments."""
    path = Path(path)
    lines = _read_text(path).splitlines()
    images: dict[int, ColmapImage] = {}
    k = 0
    while k < len(lines):
        line = lines[k].strip()
        k += 1
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        try:
            iid = int(tok[0])
            vals = [float(t) for t in tok[1:8]]
            cid = int(tok[8])
            name = " ".join(tok[9:])
            if len(vals) != 7 or not name:
                raise ValueError
        except (IndexError, ValueError):
            raise DataFormatError(f"{path}:{k}: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME', "
                                  f"got {line[:80]!r}") from None
        q, t = np.array(vals[:4]), np.array(vals[4:])
        _check_pose(path, f"line {k} (image {iid})", q, t)
        if iid in images:
            raise DataFormatError(f"{path}:{k}: image id {iid} appears twice")
        images[iid] = ColmapImage(iid, cid, name, q, t)
        k += 1  # the POINTS2D line
    return images


def _check_pose(path: Path, where: str, q: np.ndarray, t: np.ndarray) -> None:
    if not (np.isfinite(q).all() and np.isfinite(t).all()):
        raise DataFormatError(f"{path}: {where}: pose must be finite, got qvec {q.tolist()}, tvec {t.tolist()}")
    n = float(np.linalg.norm(q))
    if not 0.9 < n < 1.1:
        raise DataFormatError(f"{path}: {where}: expected a unit quaternion (wxyz), got norm {n:.4g}")


@dataclass
class ColmapModel:
    """A COLMAP sparse model read by this module: cameras, registered images, points (or None)."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: SparsePoints | None


def read_model(folder: str | Path, points: bool = True) -> ColmapModel:
    """cameras + images (+ points3D when `points` and present) of a model folder, binary files
    preferred over text. Images referring to a missing camera raise DataFormatError."""
    folder = Path(folder)

    def pick(stem: str) -> Path | None:
        for suffix in (".bin", ".txt"):
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
        return None

    cp, ip = pick("cameras"), pick("images")
    if ip is None:
        raise FileNotFoundError(f"{folder}: no images.bin or images.txt")
    if cp is None:
        raise FileNotFoundError(f"{folder}: no cameras.bin or cameras.txt")
    cams = read_cameras_binary(cp) if cp.suffix == ".bin" else read_cameras_text(cp)
    images = read_images_binary(ip) if ip.suffix == ".bin" else read_images_text(ip)
    for im in images.values():
        if im.camera_id not in cams:
            raise DataFormatError(f"{ip}: image {im.image_id} ({im.name!r}) uses camera {im.camera_id}, "
                                  f"which {cp.name} does not define")
    pts = None
    pp = pick("points3D") if points else None
    if pp is not None:
        pts = read_sparse_points(pp)
    return ColmapModel(cams, images, pts)


def find_sparse_points(folder: str | Path) -> Path | None:
    """points3D.bin or points3D.txt in `folder`, `folder`/sparse/0 or `folder`/sparse (first found)."""
    folder = Path(folder)
    for sub in (folder, folder / "sparse" / "0", folder / "sparse"):
        for name in ("points3D.bin", "points3D.txt"):
            if (sub / name).is_file():
                return sub / name
    return None


def read_sparse_points(path: str | Path) -> SparsePoints:
    """points3D.bin or points3D.txt, by suffix."""
    path = Path(path)
    return read_points3d_binary(path) if path.suffix == ".bin" else read_points3d_text(path)


def _read_count(path: Path, data: bytes, kind: str, noun: str, least: int) -> int:
    """The uint64 record count heading a COLMAP .bin file, checked against the file size (each record
    takes at least `least` bytes) before anything is allocated."""
    if len(data) < 8:
        raise DataFormatError(f"{path}: truncated {kind} ({len(data)} bytes; expected a uint64 {noun} "
                              f"count and {least}+ bytes per {noun})")
    (count,) = struct.unpack_from("<Q", data, 0)
    if count > (len(data) - 8) // least:
        article = "an" if kind[0] in "aeiou" else "a"
        raise DataFormatError(f"{path}: header says {count} {noun}s but the file ({len(data)} bytes) holds "
                              f"at most {(len(data) - 8) // least}; truncated or not {article} {kind}")
    return count


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    return path.read_bytes()


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not a UTF-8 text file ({e})") from None
