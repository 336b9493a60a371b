"""Geometric checks of loaded cameras: similarity alignment, rotation errors, point visibility.

Used by loaders (to bring COLMAP sparse points into a calibrated frame), by `foresplat data
inspect`, and by the tests that check real scenes geometrically. float64 numpy throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Similarity:
    """x -> scale * R @ x + t (R [3, 3] proper rotation, t [3])."""

    scale: float
    R: np.ndarray
    t: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Transforms points [..., 3]."""
        return self.scale * np.asarray(x, dtype=np.float64) @ self.R.T + self.t

    def apply_viewmat(self, viewmat: np.ndarray) -> np.ndarray:
        """World-to-camera viewmats [..., 4, 4] of the source frame -> the same cameras in the target
        frame (rotation R_c R^T, translation scaled by `scale`, so the camera centres map by `apply`)."""
        v = np.array(viewmat, dtype=np.float64)
        R_new = v[..., :3, :3] @ self.R.T
        t_new = self.scale * v[..., :3, 3] - (R_new @ self.t[:, None])[..., 0]
        out = v.copy()
        out[..., :3, :3] = R_new
        out[..., :3, 3] = t_new
        return out


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> Similarity:
    """Least-squares similarity (Umeyama 1991) with dst ~ scale * R @ src + t, src/dst [N, 3], N >= 3."""
    X = np.asarray(src, dtype=np.float64)
    Y = np.asarray(dst, dtype=np.float64)
    if X.shape != Y.shape or X.ndim != 2 or X.shape[1] != 3 or X.shape[0] < 3:
        raise ValueError(f"umeyama: need two [N>=3, 3] point sets of the same shape, got "
                         f"{list(X.shape)} and {list(Y.shape)}")
    mx, my = X.mean(0), Y.mean(0)
    Xc, Yc = X - mx, Y - my
    cov = Yc.T @ Xc / X.shape[0]
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    var = (Xc ** 2).sum(1).mean()
    scale = float(np.trace(np.diag(D) @ S) / var) if with_scale else 1.0
    return Similarity(scale, R, my - scale * R @ mx)


def camera_centres(viewmats: np.ndarray) -> np.ndarray:
    """World positions [N, 3] of cameras with OpenCV world-to-camera viewmats [N, 4, 4]."""
    v = np.asarray(viewmats, dtype=np.float64)
    return -np.einsum("nji,nj->ni", v[:, :3, :3], v[:, :3, 3])


def optical_axes_focus(viewmats: np.ndarray, max_cond: float = 1e6) -> np.ndarray | None:
    """The point [3] nearest to all optical axes (least squares) of cameras with OpenCV viewmats
    [N, 4, 4], or None when the axes do not pin one down (fewer than 2 cameras, or the system's
    condition number is >= `max_cond`, e.g. all axes parallel)."""
    v = np.asarray(viewmats, dtype=np.float64)
    c = camera_centres(v)
    A, b = np.zeros((3, 3)), np.zeros(3)
    for ci, ai in zip(c, v[:, 2, :3]):  # camera z axis in world coordinates (third row of R)
        P = np.eye(3) - np.outer(ai, ai)
        A += P
        b += P @ ci
    if len(c) < 2 or not np.linalg.cond(A) < max_cond:
        return None
    return np.linalg.solve(A, b)


def rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Angle in degrees [...] of the relative rotation Ra Rb^T for rotations [..., 3, 3]."""
    d = np.asarray(Ra, dtype=np.float64) @ np.swapaxes(np.asarray(Rb, dtype=np.float64), -1, -2)
    c = (np.trace(d, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


@dataclass
class CameraAgreement:
    """How well two camera sets agree after a similarity alignment of their centres."""

    similarity: Similarity      # maps set A's world frame into set B's
    centre_errors: np.ndarray   # [N] distance between aligned centres of A and centres of B (B units)
    rotation_errors_deg: np.ndarray  # [N] angle between aligned orientations


def compare_cameras(viewmats_a: np.ndarray, viewmats_b: np.ndarray) -> CameraAgreement:
    """Aligns camera set A to set B (Umeyama with scale on the centres) and measures the residual
    centre and rotation errors per camera. viewmats [N, 4, 4] OpenCV, same camera order."""
    sim = umeyama(camera_centres(viewmats_a), camera_centres(viewmats_b))
    aligned = sim.apply_viewmat(viewmats_a)
    b = np.asarray(viewmats_b, dtype=np.float64)
    errs = np.linalg.norm(camera_centres(aligned) - camera_centres(b), axis=-1)
    rot = rotation_angle_deg(aligned[:, :3, :3], b[:, :3, :3])
    return CameraAgreement(sim, errs, rot)


@dataclass
class PointVisibility:
    """Fractions of sparse points that project into views (per view, over all points)."""

    in_front: np.ndarray  # [V] fraction with camera z > 0
    inside: np.ndarray    # [V] fraction with z > 0 and the pixel inside the image


def point_visibility(viewmats: np.ndarray, Ks: np.ndarray, width: int, height: int,
                     points: np.ndarray) -> PointVisibility:
    """Projects points [P, 3] into V cameras (viewmats [V, 4, 4], Ks [V, 3, 3], one image size)."""
    v = np.asarray(viewmats, dtype=np.float64)
    K = np.asarray(Ks, dtype=np.float64)
    X = np.asarray(points, dtype=np.float64)
    cam = np.einsum("vij,pj->vpi", v[:, :3, :3], X) + v[:, None, :3, 3]  # [V, P, 3]
    z = cam[..., 2]
    front = z > 1e-9
    uvw = np.einsum("vij,vpj->vpi", K, cam)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = uvw[..., 0] / uvw[..., 2]
        w = uvw[..., 1] / uvw[..., 2]
    inside = front & (u >= 0) & (u <= width) & (w >= 0) & (w <= height)
    return PointVisibility(front.mean(1), inside.mean(1))


def optical_axis_distances(viewmats: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Distance [V] from `point` [3] to each camera's optical axis (the ray through the centre along +z)."""
    v = np.asarray(viewmats, dtype=np.float64)
    c = camera_centres(v)
    axis = v[:, 2, :3]  # camera z axis in world coordinates (third row of R)
    d = np.asarray(point, dtype=np.float64)[None] - c
    along = (d * axis).sum(-1, keepdims=True)
    return np.linalg.norm(d - along * axis, axis=-1)
