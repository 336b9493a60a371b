"""Lens distortion (OpenCV / COLMAP models) and image undistortion by inverse mapping.

Models, on normalized camera coordinates (x, y) = (X/Z, Y/Z):
    "radial_tangential"  (OpenCV; COLMAP SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV)
        r2 = x^2 + y^2,  radial = (1 + k1 r2 + k2 r2^2 + k3 r2^3) / (1 + k4 r2 + k5 r2^2 + k6 r2^3)
        xd = x radial + 2 p1 x y + p2 (r2 + 2 x^2),  yd = y radial + p1 (r2 + 2 y^2) + 2 p2 x y
    "fisheye"  (OpenCV fisheye; COLMAP / nerfstudio OPENCV_FISHEYE)
        theta = atan(r),  theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)
        (xd, yd) = (theta_d / r) (x, y)

`undistort_image` maps every pixel of the undistorted output back into the distorted input
(output pixel -> normalized ray -> distort -> input pixel) and resamples bilinearly: no holes.
`distort_image` is its inverse (used to synthesize distorted test images); it needs the
undistorted position of every distorted pixel, found by the iterative solve `undistort_points`
(Newton's method with the analytic 2x2 Jacobian, as OpenCV's cv::undistortPoints iterates).
Pixel centres are at +0.5 (foresplat convention) in both images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

DistortionModel = Literal["radial_tangential", "fisheye"]


@dataclass(frozen=True)
class Distortion:
    """Distortion coefficients of one camera (see module docstring for the models).

    radial_tangential uses k = (k1, k2, k3, k4, k5, k6) and p = (p1, p2);
    fisheye uses k = (k1, k2, k3, k4) and no p.
    """

    model: DistortionModel = "radial_tangential"
    k: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    p: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if self.model not in ("radial_tangential", "fisheye"):
            raise ValueError(f"Distortion: unknown model {self.model!r}")
        n = 6 if self.model == "radial_tangential" else 4
        k = tuple(float(v) for v in self.k) + (0.0,) * (n - len(self.k))
        if len(k) != n:
            raise ValueError(f"Distortion: {self.model} takes at most {n} k coefficients, got {len(self.k)}")
        if not all(np.isfinite(k)) or not all(np.isfinite(self.p)):
            raise ValueError(f"Distortion: coefficients must be finite, got k={self.k}, p={self.p}")
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "p", (float(self.p[0]), float(self.p[1])))

    @property
    def is_identity(self) -> bool:
        """True when every coefficient is zero (nothing to undistort)."""
        return not any(self.k) and not any(self.p)


def distort_points(x: np.ndarray, y: np.ndarray, d: Distortion) -> tuple[np.ndarray, np.ndarray]:
    """Undistorted normalized coordinates (x, y) [...] -> distorted (xd, yd) [...] (float64)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if d.model == "fisheye":
        r = np.hypot(x, y)
        th = np.arctan(r)
        t2 = th * th
        k1, k2, k3, k4 = d.k
        thd = th * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(r > 1e-12, thd / r, 1.0)
        return x * s, y * s
    k1, k2, k3, k4, k5, k6 = d.k
    p1, p2 = d.p
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def _jacobian(x: np.ndarray, y: np.ndarray, d: Distortion, h: float = 1e-7):
    """2x2 Jacobian of `distort_points` at (x, y) by central differences: (dxd/dx, dxd/dy, dyd/dx, dyd/dy)."""
    xa, ya = distort_points(x + h, y, d)
    xb, yb = distort_points(x - h, y, d)
    xc, yc = distort_points(x, y + h, d)
    xe, ye = distort_points(x, y - h, d)
    return (xa - xb) / (2 * h), (xc - xe) / (2 * h), (ya - yb) / (2 * h), (yc - ye) / (2 * h)


def undistort_points(xd: np.ndarray, yd: np.ndarray, d: Distortion, iterations: int = 30,
                     tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of `distort_points` by Newton's method: distorted (xd, yd) [...] -> (x, y, converged).

    Starts at (xd, yd); each step solves J delta = residual with the 2x2 Jacobian. `converged`
    [...] is False where the residual stays above 1e-9 (e.g. outside the model's invertible zone).
    """
    xd = np.asarray(xd, dtype=np.float64)
    yd = np.asarray(yd, dtype=np.float64)
    x, y = xd.copy(), yd.copy()
    for _ in range(iterations):
        fx, fy = distort_points(x, y, d)
        ex, ey = fx - xd, fy - yd
        if float(np.max(np.abs(ex), initial=0.0)) < tol and float(np.max(np.abs(ey), initial=0.0)) < tol:
            break
        a, b, c, e = _jacobian(x, y, d)
        det = a * e - b * c
        det = np.where(np.abs(det) < 1e-12, 1e-12, det)
        x = x - (e * ex - b * ey) / det
        y = y - (a * ey - c * ex) / det
    fx, fy = distort_points(x, y, d)
    ok = np.isfinite(x) & np.isfinite(y) & (np.hypot(fx - xd, fy - yd) < 1e-9)
    return x, y, ok


def _pixel_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (u + 0.5, v + 0.5), each [H, W] float64."""
    u = np.arange(width, dtype=np.float64) + 0.5
    v = np.arange(height, dtype=np.float64) + 0.5
    return np.meshgrid(u, v)


def _sample(image: np.ndarray, u: np.ndarray, v: np.ndarray, fill: np.ndarray | float,
            mode: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
    """Samples image [H, W, C] at continuous pixel coordinates (u, v) [H', W'] (centres at +0.5).

    Returns (samples [H', W', C] float32, valid [H', W'] bool): where (u, v) falls outside the
    image, `fill` (scalar or [C]) is used and valid is False.
    """
    H, W, C = image.shape
    grid = np.stack([u / W * 2 - 1, v / H * 2 - 1], -1)  # align_corners=False: +-1 are the outer edges
    inp = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    g = torch.from_numpy(grid.astype(np.float32))[None]
    out = F.grid_sample(inp, g, mode=mode, padding_mode="border", align_corners=False)[0]
    out = out.permute(1, 2, 0).numpy()
    valid = (u >= 0) & (u <= W) & (v >= 0) & (v <= H) & np.isfinite(u) & np.isfinite(v)
    fill_arr = np.broadcast_to(np.asarray(fill, dtype=np.float32), (C,))
    out = np.where(valid[..., None], out, fill_arr)
    return out.astype(np.float32), valid


def undistort_image(image: np.ndarray, K: np.ndarray, d: Distortion, K_out: np.ndarray | None = None,
                    fill: np.ndarray | float = 0.0, mode: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
    """Undistorts image [H, W, C] taken with (K [3, 3], d) into a pinhole image of the same size with
    intrinsics K_out (default K): every output pixel centre is mapped to its distorted position in
    the input and sampled (`mode` "bilinear", or "nearest" for depth/label maps).

    Returns (undistorted [H, W, C] float32, valid [H, W] bool: the source position lay inside the input).
    """
    K = np.asarray(K, dtype=np.float64)
    Ko = K if K_out is None else np.asarray(K_out, dtype=np.float64)
    H, W = image.shape[:2]
    uu, vv = _pixel_grid(W, H)
    x = (uu - Ko[0, 2]) / Ko[0, 0]
    y = (vv - Ko[1, 2]) / Ko[1, 1]
    xd, yd = distort_points(x, y, d)
    return _sample(image, K[0, 0] * xd + K[0, 2], K[1, 1] * yd + K[1, 2], fill, mode)


def distort_image(image: np.ndarray, K: np.ndarray, d: Distortion, fill: np.ndarray | float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `undistort_image` (same K in and out): renders what a camera with distortion `d`
    sees, from a pinhole image [H, W, C]. Each distorted pixel is mapped to its undistorted position
    by the iterative `undistort_points`, then sampled bilinearly.

    Returns (distorted [H, W, C] float32, valid [H, W] bool).
    """
    K = np.asarray(K, dtype=np.float64)
    H, W = image.shape[:2]
    uu, vv = _pixel_grid(W, H)
    x, y, ok = undistort_points((uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], d)
    out, valid = _sample(image, K[0, 0] * x + K[0, 2], K[1, 1] * y + K[1, 2], fill)
    return out, valid & ok


def colmap_camera_to_pinhole(model: str, params) -> tuple[float, float, float, float, Distortion | None]:
    """COLMAP camera model name + params -> (fx, fy, cx, cy, distortion or None for pinhole models).

    Supported: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, OPENCV_FISHEYE, FULL_OPENCV.
    Others (FOV, THIN_PRISM_FISHEYE, ...) raise ValueError naming the model.
    """
    p = [float(v) for v in params]
    need = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8,
            "OPENCV_FISHEYE": 8, "FULL_OPENCV": 12}
    if model not in need:
        raise ValueError(f"unsupported camera model {model!r} (supported: {', '.join(need)})")
    if len(p) != need[model]:
        raise ValueError(f"camera model {model} takes {need[model]} parameters, got {len(p)}")
    if model == "SIMPLE_PINHOLE":
        return p[0], p[0], p[1], p[2], None
    if model == "PINHOLE":
        return p[0], p[1], p[2], p[3], None
    if model == "SIMPLE_RADIAL":
        return p[0], p[0], p[1], p[2], Distortion("radial_tangential", (p[3],))
    if model == "RADIAL":
        return p[0], p[0], p[1], p[2], Distortion("radial_tangential", (p[3], p[4]))
    if model == "OPENCV":
        return p[0], p[1], p[2], p[3], Distortion("radial_tangential", (p[4], p[5]), (p[6], p[7]))
    if model == "OPENCV_FISHEYE":
        return p[0], p[1], p[2], p[3], Distortion("fisheye", tuple(p[4:8]))
    # FULL_OPENCV: fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, k5, k6
    return p[0], p[1], p[2], p[3], Distortion("radial_tangential", (p[4], p[5], p[8], p[9], p[10], p[11]),
                                              (p[6], p[7]))
