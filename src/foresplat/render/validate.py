"""Input checks for `rasterization`: every error names the tensor and what was expected."""

from __future__ import annotations

import math

import torch

from foresplat._checks import check_tensor
from foresplat.render.sh import num_sh_bases


def _check_shape(name: str, t: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(t.shape) != shape:
        want = "[" + ", ".join(str(s) for s in shape) + "]"
        raise ValueError(f"{name}: expected shape {want}, got {list(t.shape)}")


def _value_stats(named: list[tuple[str, torch.Tensor]], quats: torch.Tensor) -> dict[str, tuple[float, float]]:
    """(min, max) of every non-empty tensor and the smallest squared quaternion norm, fetched with a
    single device sync. NaN propagates through min/max, so a non-finite pair means NaN/inf inside."""
    keys, parts = [], []
    for name, t in named:
        if t.numel() > 0:
            mn, mx = torch.aminmax(t.detach())
            keys.append(name)
            parts += [mn.double(), mx.double()]
    if quats.numel() > 0:
        q = quats.detach()
        keys.append("quats_sqnorm")
        parts += [(q * q).sum(-1).min().double()] * 2
    if not parts:
        return {}
    values = torch.stack(parts).tolist()
    return {k: (values[2 * i], values[2 * i + 1]) for i, k in enumerate(keys)}


def validate_inputs(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    sh_degree: int | None,
    backgrounds: torch.Tensor | None,
    near_plane: float,
    far_plane: float,
    eps2d: float,
) -> None:
    """Raises TypeError/ValueError for malformed rasterization inputs (shapes, dtypes, NaN/inf,
    image size, cameras that cannot be inverted, invalid activated values)."""
    named = [("means", means), ("quats", quats), ("scales", scales), ("opacities", opacities),
             ("colors", colors), ("viewmats", viewmats), ("Ks", Ks)]
    if backgrounds is not None:
        named.append(("backgrounds", backgrounds))
    for name, t in named:
        check_tensor(name, t, (), finite=False)
    stats = _value_stats(named, quats)
    for name, t in named:
        if name in stats and not all(math.isfinite(v) for v in stats[name]):
            check_tensor(name, t, ())  # raises, naming the tensor and counting the NaN/inf values
    if means.dim() != 2 or means.shape[-1] != 3:
        raise ValueError(f"means: expected shape [N, 3], got {list(means.shape)}")
    n = means.shape[0]
    _check_shape("quats", quats, (n, 4))
    _check_shape("scales", scales, (n, 3))
    _check_shape("opacities", opacities, (n,))
    if viewmats.dim() != 3 or viewmats.shape[-2:] != (4, 4):
        raise ValueError(f"viewmats: expected shape [C, 4, 4], got {list(viewmats.shape)}")
    c = viewmats.shape[0]
    if c == 0:
        raise ValueError("viewmats: expected at least one camera, got C = 0")
    _check_shape("Ks", Ks, (c, 3, 3))
    if sh_degree is None:
        if not ((colors.dim() == 2 and colors.shape == (n, 3)) or
                (colors.dim() == 3 and colors.shape == (c, n, 3))):
            raise ValueError(f"colors: expected RGB [N, 3] = [{n}, 3] or [C, N, 3] = [{c}, {n}, 3] "
                             f"(or SH [N, K, 3] with sh_degree set), got {list(colors.shape)}")
    else:
        k = num_sh_bases(sh_degree)
        if colors.dim() != 3 or colors.shape[0] != n or colors.shape[2] != 3 or colors.shape[1] < k:
            raise ValueError(f"colors: sh_degree={sh_degree} expects SH coefficients [N, K>={k}, 3] "
                             f"with N = {n}, got {list(colors.shape)}")
    for name, t in (("quats", quats), ("scales", scales), ("opacities", opacities), ("colors", colors),
                    ("viewmats", viewmats), ("Ks", Ks)):
        if t.dtype != means.dtype:
            raise TypeError(f"{name}: dtype {t.dtype} differs from means' {means.dtype}")
        if t.device != means.device:
            raise ValueError(f"{name}: on {t.device}, but means is on {means.device}")
    if isinstance(width, bool) or isinstance(height, bool) or int(width) != width or int(height) != height:
        raise TypeError(f"width/height: expected integers, got {width!r} x {height!r}")
    if width <= 0 or height <= 0:
        raise ValueError(f"width/height: image size must be positive, got {width} x {height}")
    if backgrounds is not None:
        if backgrounds.shape not in ((3,), (c, 3)):
            raise ValueError(f"backgrounds: expected shape [3] or [C, 3] = [{c}, 3], "
                             f"got {list(backgrounds.shape)}")
        if backgrounds.dtype != means.dtype or backgrounds.device != means.device:
            raise TypeError(f"backgrounds: expected dtype {means.dtype} on {means.device}, got "
                            f"{backgrounds.dtype} on {backgrounds.device}")
    if not (0 <= near_plane < far_plane):
        raise ValueError(f"near_plane/far_plane: expected 0 <= near < far, got {near_plane}, {far_plane}")
    if eps2d < 0:
        raise ValueError(f"eps2d: expected >= 0, got {eps2d}")
    if n > 0:
        if stats["quats_sqnorm"][0] < 1e-24:
            raise ValueError("quats: contains a zero quaternion (cannot be normalized)")
        if stats["scales"][0] < 0:
            raise ValueError("scales: expected activated (non-negative) standard deviations, got "
                             "negative values (pass exp(log_scales))")
        if stats["opacities"][0] < 0 or stats["opacities"][1] > 1:
            raise ValueError("opacities: expected activated opacities in [0, 1] (pass sigmoid(logits))")
    v = viewmats.detach().double()
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=v.dtype, device=v.device)
    if not torch.allclose(v[:, 3, :], bottom.expand(c, 4), atol=1e-6):
        raise ValueError("viewmats: the last row of every world-to-camera matrix must be [0, 0, 0, 1]")
    det = torch.linalg.det(v[:, :3, :3])
    if bool((det.abs() < 1e-8).any()):
        bad = torch.nonzero(det.abs() < 1e-8).flatten().tolist()
        raise ValueError(f"viewmats: camera(s) {bad} have a singular rotation block (not invertible)")
    k = Ks.detach()
    if bool((k[:, 0, 0] <= 0).any()) or bool((k[:, 1, 1] <= 0).any()):
        raise ValueError("Ks: focal lengths fx = Ks[:, 0, 0] and fy = Ks[:, 1, 1] must be positive")
