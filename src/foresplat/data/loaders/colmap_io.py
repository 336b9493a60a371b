"""Small readers for COLMAP model files that work on partial models (no images.bin).

pycolmap.Reconstruction refuses a folder without images.bin/txt; LLFF and DTU releases often ship
only cameras.bin and points3D.bin. These readers follow COLMAP's documented layouts:

cameras.bin   uint64 count, then per camera: int32 camera_id, int32 model_id, uint64 width,
              uint64 height, float64 params[num_params(model)]            (little endian)
points3D.bin  uint64 count, then per point: uint64 point3D_id, float64 xyz[3], uint8 rgb[3],
              float64 error, uint64 track_length, then track_length x (int32 image_id, int32 point2D_idx)
cameras.txt   "CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]" per line, '#' comments
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


def read_cameras_binary(path: str | Path) -> dict[int, ColmapCamera]:
    """Reads cameras.bin (see module docstring) -> {camera_id: ColmapCamera}."""
    path = Path(path)
    data = _read_bytes(path)
    try:
        (count,) = struct.unpack_from("<Q", data, 0)
        off = 8
        cams: dict[int, ColmapCamera] = {}
        for i in range(count):
            cid, mid, w, h = struct.unpack_from("<iiQQ", data, off)
            off += 24
            if mid not in CAMERA_MODELS:
                raise DataFormatError(f"{path}: camera {cid} has unknown model id {mid}")
            name, n = CAMERA_MODELS[mid]
            params = np.frombuffer(data, dtype="<f8", count=n, offset=off).astype(np.float64)
            off += 8 * n
            cams[cid] = ColmapCamera(cid, name, int(w), int(h), params)
    except (struct.error, ValueError) as e:
        raise DataFormatError(f"{path}: truncated or corrupt cameras.bin ({e})") from None
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
    if len(data) < 8:
        raise DataFormatError(f"{path}: truncated points3D.bin (no point count)")
    (count,) = struct.unpack_from("<Q", data, 0)
    if count > (len(data) - 8) // size:
        raise DataFormatError(f"{path}: header says {count} points but the file holds at most "
                              f"{(len(data) - 8) // size}")
    offsets = np.empty(count, dtype=np.int64)
    off = 8
    try:
        for i in range(count):  # walk the variable-length records; only the track length is unpacked
            offsets[i] = off
            off += size + 8 * track_len.unpack_from(data, off + size - 8)[0]
    except struct.error:
        raise DataFormatError(f"{path}: truncated points3D.bin (record {i} of {count})") from None
    if off != len(data):
        raise DataFormatError(f"{path}: truncated or corrupt points3D.bin (records end at byte {off}, "
                              f"file has {len(data)})")
    raw = np.frombuffer(data, dtype=np.uint8)
    rec = raw[offsets[:, None] + np.arange(size)].copy().view(head).reshape(count)
    return SparsePoints(rec["xyz"].astype(np.float64), rec["rgb"].astype(np.uint8),
                        rec["error"].astype(np.float64), rec["track"].astype(np.int64))


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
