"""Gaussians <-> .ply in the layout of the original 3DGS code (graphdeco-inria GaussianModel.save_ply).

One `vertex` element, binary little-endian, every property float32, in this order:
    x y z                         means
    nx ny nz                      normals (always zero; ignored on read)
    f_dc_0 f_dc_1 f_dc_2          sh[:, 0, c]
    f_rest_0 .. f_rest_{3(K-1)-1} sh[:, k, c] for k >= 1, channel-major: f_rest_{c*(K-1) + k-1}
    opacity                       opacity logit (pre-sigmoid)
    scale_0 scale_1 scale_2       log scales
    rot_0 rot_1 rot_2 rot_3       quaternion (w, x, y, z), unnormalized
These are exactly the raw fields of `Gaussians`, so a float32 round trip is bit-exact.
`read_ply` also accepts files from other tools in this layout: any property order, any numeric
property type, ascii or binary of either endianness, extra properties ignored, normals optional.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import plyfile
import torch

from foresplat.gaussians import SH_DEGREE_OF_K, Gaussians
from foresplat.io.atomic import atomic_open

__all__ = ["write_ply", "read_ply", "ply_property_names", "pad_sh_degree", "check_gaussian_values"]

_K_OF_REST = {3 * (k - 1): k for k in SH_DEGREE_OF_K}  # number of f_rest properties -> K


def ply_property_names(sh_degree: int) -> list[str]:
    """The vertex property names, in file order, that `write_ply` uses for SH degree `sh_degree`."""
    if sh_degree not in (0, 1, 2, 3):
        raise ValueError(f"sh_degree must be in 0..3, got {sh_degree}")
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def pad_sh_degree(gaussians: Gaussians, sh_degree: int) -> Gaussians:
    """`gaussians` with SH degree raised to `sh_degree` by zero higher bands (sh [..., N, K, 3] ->
    [..., N, (sh_degree+1)^2, 3]); renders identically. Unchanged when already that degree.
    Raises ValueError for a degree outside 0..3 or below the current one (that would drop colour)."""
    if sh_degree not in (0, 1, 2, 3):
        raise ValueError(f"sh_degree: expected 0, 1, 2 or 3, got {sh_degree}")
    have = gaussians.sh_degree
    if sh_degree < have:
        raise ValueError(f"sh_degree {sh_degree}: the Gaussians have SH degree {have}; lowering it would "
                         f"drop colour bands (ask for {have} or more)")
    if sh_degree == have:
        return gaussians
    sh = gaussians.sh
    pad = sh.new_zeros(*sh.shape[:-2], (sh_degree + 1) ** 2 - sh.shape[-2], 3)
    return gaussians.replace(sh=torch.cat([sh, pad], dim=-2))


def write_ply(path: str | os.PathLike, gaussians: Gaussians, sh_degree: int | None = None) -> Path:
    """Writes an unbatched `Gaussians` (N may be 0) to `path` in the 3DGS layout, atomically.

    sh_degree: write this SH degree (0..3), zero-padding the higher bands (`pad_sh_degree`); the
    original 3DGS loader (and viewers built on it) expect 3. None: the Gaussians' own degree.
    Values are converted to float32 (bit-exact for float32 input). Raises ValueError for a
    batched set, non-finite values, zero quaternions (naming the field) or a degree below the
    Gaussians' own. Returns the Path.
    """
    path = Path(path)
    if gaussians.batch_shape:
        raise ValueError(f"write_ply({path}): expects an unbatched Gaussians, got batch shape "
                         f"{list(gaussians.batch_shape)}")
    if sh_degree is not None:
        try:
            gaussians = pad_sh_degree(gaussians, sh_degree)
        except ValueError as e:
            raise ValueError(f"write_ply({path}): {e}") from None
    g = gaussians.detach().to(device="cpu", dtype=torch.float32).validate(f"write_ply({path})")
    n, k = g.num, g.sh.shape[-2]
    columns = [
        g.means,                                          # [N, 3]
        torch.zeros(n, 3),                                # normals [N, 3]
        g.sh[:, 0, :],                                    # f_dc [N, 3]
        g.sh[:, 1:, :].transpose(1, 2).reshape(n, 3 * (k - 1)),  # f_rest [N, 3*(K-1)], channel-major
        g.opacity_logits[:, None],                        # [N, 1]
        g.log_scales,                                     # [N, 3]
        g.quats,                                          # [N, 4]
    ]
    table = torch.cat(columns, dim=1).numpy().astype("<f4", copy=False)  # [N, P]
    names = ply_property_names(g.sh_degree)
    assert table.shape[1] == len(names)
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {n}\n"
              + "".join(f"property float {name}\n" for name in names)
              + "end_header\n")
    with atomic_open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(np.ascontiguousarray(table).data)
    return path


_TYPE_BYTES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
               "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}


def _check_declared_sizes(path: Path) -> None:
    """Raises ValueError naming `path` when the header's element counts need more bytes than the
    file holds (a corrupt count such as 2e9 vertices would otherwise be parsed or allocated first).
    Binary: count x record size; ascii: at least 2 bytes (a digit and a separator) per value."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        return  # plyfile reports the malformed header
    body = size - (head.find(b"\n", end) + 1 if head.find(b"\n", end) >= 0 else size)
    fmt, elements = "", []  # [name, count, min bytes per record]
    for line in head[:end].decode("ascii", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "format":
            fmt = parts[1]
        elif len(parts) >= 3 and parts[0] == "element":
            try:
                count = int(parts[2])
            except ValueError:
                raise ValueError(f"{path}: element {parts[1]!r} declares the count {parts[2]!r}, "
                                 "expected a non-negative integer") from None
            if count < 0:
                raise ValueError(f"{path}: element {parts[1]!r} declares a negative count {count}")
            elements.append([parts[1], count, 0])
        elif len(parts) >= 3 and parts[0] == "property" and elements:
            binary = fmt.startswith("binary")
            if parts[1] == "list":
                nbytes = _TYPE_BYTES.get(parts[2], 1) if binary else 2
            else:
                nbytes = _TYPE_BYTES.get(parts[1], 1) if binary else 2
            elements[-1][2] += nbytes
    need = sum(count * per for _, count, per in elements)
    if need > body:
        name, count, _ = max(elements, key=lambda e: e[1] * e[2])
        raise ValueError(f"{path}: the header declares {count} {name!r} records ({need} bytes at least) but "
                         f"the file holds {body} bytes after the header (truncated, or a corrupt count)")


def _as_table(vertex: plyfile.PlyElement) -> tuple[np.ndarray, dict[str, int]] | None:
    """[N, P] view of the vertex records when all properties share one scalar numeric type, else None."""
    data = vertex.data
    types = {data.dtype.fields[name][0] for name in data.dtype.names or ()}
    if len(types) != 1:
        return None
    (t,) = types
    if t.kind not in "fiu" or t.shape or data.dtype.itemsize != t.itemsize * len(data.dtype.names):
        return None
    table = np.asarray(data).view(t).reshape(len(data), len(data.dtype.names))
    return table, {name: data.dtype.fields[name][1] // t.itemsize for name in data.dtype.names}


def read_ply(path: str | os.PathLike, dtype: torch.dtype = torch.float32,
             device: torch.device | str = "cpu") -> Gaussians:
    """Reads a 3DGS-layout .ply into an unbatched `Gaussians` [N, ...] of `dtype` on `device`.

    The SH degree is inferred from the number of f_rest_* properties (0, 9, 24 or 45).
    Raises FileNotFoundError, or ValueError naming the file and the missing / bad property
    (not a ply, truncated data, no `vertex` element, wrong f_rest count, NaN/inf values,
    zero quaternions).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_ply: no such file {path}")
    _check_declared_sizes(path)
    try:
        ply = plyfile.PlyData.read(str(path))
    except (plyfile.PlyParseError, ValueError, EOFError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable .ply file ({type(e).__name__}: {e})") from e
    try:
        vertex = ply["vertex"]
    except KeyError:
        raise ValueError(f"{path}: no 'vertex' element (found {[el.name for el in ply.elements]})") from None
    present = {p.name for p in vertex.properties}
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [name for name in required if name not in present]
    if missing:
        raise ValueError(f"{path}: missing vertex properties {missing} required by the 3DGS layout")
    rest = sorted((p for p in present if p.startswith("f_rest_")), key=lambda s: (len(s), s))
    if len(rest) not in _K_OF_REST or rest != [f"f_rest_{i}" for i in range(len(rest))]:
        raise ValueError(f"{path}: expected f_rest_0..f_rest_(3*((d+1)^2-1)-1) for an SH degree d in 0..3 "
                         f"(0, 9, 24 or 45 properties), got {len(rest)}: {rest[:4]}{'...' if len(rest) > 4 else ''}")
    k = _K_OF_REST[len(rest)]
    np_dtype = np.dtype(torch.empty(0, dtype=dtype).numpy().dtype)
    fast = _as_table(vertex)  # one contiguous pass over the records for the common all-float case

    def stack(names: list[str]) -> torch.Tensor:
        """Columns `names` as an [N, len(names)] tensor of `dtype`, checked finite."""
        n_rows = len(vertex.data)
        if not names:
            return torch.zeros(n_rows, 0, dtype=dtype)
        if fast is not None:
            table, index = fast
            cols = table[:, [index[name] for name in names]]
        else:
            for name in names:
                if np.asarray(vertex[name]).dtype.kind not in "fiu":
                    raise ValueError(f"{path}: vertex property {name!r} has non-numeric type "
                                     f"{np.asarray(vertex[name]).dtype}")
            cols = np.stack([np.asarray(vertex[name]) for name in names], axis=1)
        cols = np.ascontiguousarray(cols, dtype=np_dtype).reshape(n_rows, len(names))
        if not np.isfinite(cols).all():
            bad = (~np.isfinite(cols)).sum(axis=0)
            named = {name: int(c) for name, c in zip(names, bad) if c}
            raise ValueError(f"{path}: NaN/inf values in vertex properties (count per property) {named}")
        return torch.from_numpy(cols)

    means = stack(["x", "y", "z"])                                  # [N, 3]
    dc = stack(["f_dc_0", "f_dc_1", "f_dc_2"])                      # [N, 3]
    f_rest = stack(rest)                                            # [N, 3*(K-1)]
    n = means.shape[0]
    sh = torch.cat([dc[:, None, :], f_rest.reshape(n, 3, k - 1).transpose(1, 2)], dim=1)  # [N, K, 3]
    g = Gaussians(
        means=means,
        quats=stack(["rot_0", "rot_1", "rot_2", "rot_3"]),          # [N, 4] wxyz
        log_scales=stack(["scale_0", "scale_1", "scale_2"]),        # [N, 3]
        opacity_logits=stack(["opacity"])[:, 0],                    # [N]
        sh=sh.contiguous(),
    )
    if n > 0 and bool((g.quats.norm(dim=-1) < 1e-12).any()):
        bad = int((g.quats.norm(dim=-1) < 1e-12).sum())
        raise ValueError(f"{path}: {bad} zero quaternion(s) in rot_0..rot_3 (cannot be normalized)")
    return g.to(device=device)


MAX_ABS_LOG_SCALE = 12.0
"""Largest |log-scale| accepted for rendering: exp(12) ~ 1.6e5 scene units. Beyond it the projected
2D covariance overflows float32 (its determinant ~ scale^4 (f/z)^4) and renders come out black/NaN."""
MAX_ABS_MEAN = 1e8
"""Largest |coordinate| of a mean accepted for rendering (float32 projection stays finite)."""


def check_gaussian_values(g: Gaussians, source: str) -> Gaussians:
    """Checks that Gaussians read from `source` (e.g. a .ply path) can be rendered and refined:
    at least one Gaussian, finite values, log-scales within +-MAX_ABS_LOG_SCALE (positive side:
    too large scales overflow) and means within +-MAX_ABS_MEAN. Raises ValueError naming `source`,
    the property and the range found; returns g."""
    if g.num == 0:
        raise ValueError(f"{source}: holds 0 Gaussians (0 vertices): nothing to render or refine")
    for name, t in (("x/y/z", g.means), ("scale_0..2", g.log_scales), ("opacity", g.opacity_logits),
                    ("rot_0..3", g.quats), ("f_dc/f_rest", g.sh)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{source}: NaN/inf values in {name}")
    hi = float(g.log_scales.max())
    if hi > MAX_ABS_LOG_SCALE:
        n = int((g.log_scales > MAX_ABS_LOG_SCALE).any(-1).sum())
        raise ValueError(f"{source}: log-scales (scale_0..2) up to {hi:.4g} in {n} Gaussian(s); expected at most "
                         f"{MAX_ABS_LOG_SCALE:g} (scale = exp(value) in scene units; typical 3DGS values lie in -12..3)")
    m = float(g.means.abs().max())
    if m > MAX_ABS_MEAN:
        raise ValueError(f"{source}: means (x/y/z) reach {m:.4g}; expected |coordinate| <= {MAX_ABS_MEAN:g}")
    return g
