"""Camera-convention converters, each written once: every loader goes through these functions.

Target convention (foresplat.cameras): OpenCV world-to-camera `viewmat` [4, 4] (camera axes
x right, y down, z forward) and pixel intrinsics K [3, 3] with pixel (u, v) centred at
(u + 0.5, v + 0.5). Everything here is float64 numpy; loaders convert to torch at the end.

Sources and their conventions:
    OpenGL / Blender / NeRF / instant-ngp / nerfstudio   camera-to-world, camera looks along -z, y up
    LLFF poses_bounds.npy     camera-to-world 3x4 with rotation columns (down, right, back)
    PyTorch3D / CO3D          row vectors: X_cam = X_world @ R + T; camera +X left, +Y up, +Z forward;
                              intrinsics in NDC ("ndc_norm_image_bounds" or "ndc_isotropic")
    TartanAir (NED)           camera-to-world, body axes x forward, y right, z down; quaternion xyzw
    COLMAP                    world-to-camera quaternion wxyz + translation (already OpenCV axes)
    IDR / NeuS / DTU          projection P = K [R | t] (pixel centres at integer coordinates)
    MVSNet / BlendedMVS       world-to-camera 4x4 (OpenCV axes), K with integer pixel centres
    Strecha `.camera`         R camera-to-world (OpenCV axes) + camera centre; x_cam = R^T (X - C)
    Middlebury `_par.txt`     K, R, t with x = K [R | t] X (world-to-camera, OpenCV axes)
Each converter has its inverse next to it (used by the tests' fixture writers).
"""

from __future__ import annotations

import numpy as np
import torch

from foresplat.cameras import c2w_opengl_to_viewmat

# Body coordinates of the OpenCV camera axes: column j = OpenCV axis j written in the source frame.
_LLFF_FROM_OPENCV = np.array([[0.0, 1.0, 0.0],    # LLFF col0 (down)  = OpenCV +y
                              [1.0, 0.0, 0.0],    # LLFF col1 (right) = OpenCV +x
                              [0.0, 0.0, -1.0]])  # LLFF col2 (back)  = OpenCV -z
_NED_FROM_OPENCV = np.array([[0.0, 0.0, 1.0],     # NED x (forward) = OpenCV z
                             [1.0, 0.0, 0.0],     # NED y (right)   = OpenCV x
                             [0.0, 1.0, 0.0]])    # NED z (down)    = OpenCV y
_FLIP_XY = np.diag([-1.0, -1.0, 1.0])             # PyTorch3D (left, up, fwd) <-> OpenCV (right, down, fwd)
_FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])        # OpenGL (right, up, back) <-> OpenCV (right, down, fwd)


def as_homogeneous(m: np.ndarray) -> np.ndarray:
    """[..., 3, 4] or [..., 4, 4] rigid transforms -> [..., 4, 4] float64 with last row [0, 0, 0, 1]."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape[-2:] == (4, 4):
        return m.copy()
    if m.shape[-2:] != (3, 4):
        raise ValueError(f"expected [..., 3, 4] or [..., 4, 4] transforms, got shape {list(m.shape)}")
    out = np.zeros(m.shape[:-2] + (4, 4))
    out[..., :3, :] = m
    out[..., 3, 3] = 1.0
    return out


def invert_rigid(m: np.ndarray) -> np.ndarray:
    """Inverse of rigid (or similarity) transforms [..., 4, 4] (exact linear inverse, float64)."""
    return np.linalg.inv(as_homogeneous(m))


def c2w_to_viewmat(c2w: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world [..., 3|4, 4] -> OpenCV world-to-camera viewmat [..., 4, 4]."""
    return invert_rigid(c2w)


def opengl_c2w_to_viewmat(c2w: np.ndarray) -> np.ndarray:
    """OpenGL/Blender camera-to-world [..., 3|4, 4] (looks along -z, y up) -> OpenCV viewmat [..., 4, 4].

    Delegates to foresplat.cameras.c2w_opengl_to_viewmat (the package's one definition), in float64.
    """
    return c2w_opengl_to_viewmat(torch.from_numpy(as_homogeneous(c2w))).numpy()


def viewmat_to_opengl_c2w(viewmat: np.ndarray) -> np.ndarray:
    """Inverse of `opengl_c2w_to_viewmat`: OpenCV viewmat [..., 4, 4] -> OpenGL camera-to-world."""
    return invert_rigid(viewmat) @ _FLIP_YZ


def llff_to_viewmat(poses: np.ndarray) -> np.ndarray:
    """LLFF camera-to-world [N, 3, 4|5] (rotation columns down, right, back; hwf column ignored)
    -> OpenCV viewmats [N, 4, 4]. OpenCV (x, y, z) = LLFF (col1, col0, -col2)."""
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != 3 or p.shape[1] != 3 or p.shape[2] not in (4, 5):
        raise ValueError(f"LLFF poses: expected [N, 3, 5] or [N, 3, 4], got {list(p.shape)}")
    c2w = np.zeros((p.shape[0], 4, 4))
    c2w[:, :3, :3] = p[:, :, :3] @ _LLFF_FROM_OPENCV
    c2w[:, :3, 3] = p[:, :, 3]
    c2w[:, 3, 3] = 1.0
    return invert_rigid(c2w)


def viewmat_to_llff(viewmat: np.ndarray) -> np.ndarray:
    """Inverse of `llff_to_viewmat`: OpenCV viewmats [N, 4, 4] -> LLFF camera-to-world [N, 3, 4]."""
    c2w = invert_rigid(viewmat)
    out = np.zeros(c2w.shape[:-2] + (3, 4))
    out[..., :3] = c2w[..., :3, :3] @ _LLFF_FROM_OPENCV.T
    out[..., 3] = c2w[..., :3, 3]
    return out


def pytorch3d_to_viewmat(R: np.ndarray, T: np.ndarray) -> np.ndarray:
    """PyTorch3D / CO3D extrinsics (row-vector X_cam = X_world @ R + T, camera +X left, +Y up,
    +Z forward), R [N, 3, 3], T [N, 3] -> OpenCV viewmats [N, 4, 4].

    In column form the PyTorch3D world-to-camera rotation is R^T; OpenCV flips x and y.
    """
    R = np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)
    T = np.asarray(T, dtype=np.float64).reshape(-1, 3)
    out = np.zeros((R.shape[0], 4, 4))
    out[:, :3, :3] = _FLIP_XY @ R.transpose(0, 2, 1)
    out[:, :3, 3] = T @ _FLIP_XY
    out[:, 3, 3] = 1.0
    return out


def viewmat_to_pytorch3d(viewmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `pytorch3d_to_viewmat`: OpenCV viewmats [N, 4, 4] -> (R [N, 3, 3], T [N, 3])."""
    v = np.asarray(viewmat, dtype=np.float64).reshape(-1, 4, 4)
    R = (_FLIP_XY @ v[:, :3, :3]).transpose(0, 2, 1)
    T = v[:, :3, 3] @ _FLIP_XY
    return R, T


def ndc_to_pixel_intrinsics(focal: np.ndarray, principal: np.ndarray, fmt: str,
                            width: int, height: int) -> np.ndarray:
    """CO3D / PyTorch3D NDC intrinsics -> pixel K [3, 3] for a width x height image.

    focal (fx, fy) and principal point (px, py) are in NDC units scaled by half the image size
    ("ndc_norm_image_bounds": per axis; "ndc_isotropic": by half the shorter side). NDC +x is
    left and +y up, so pixel cx = W/2 - px * s_x and cy = H/2 - py * s_y (the NDC range [-1, 1]
    spans pixel edges, which is foresplat's +0.5 pixel-centre convention).
    """
    half = np.array([width / 2.0, height / 2.0])
    if fmt.lower() == "ndc_norm_image_bounds":
        s = half
    elif fmt.lower() == "ndc_isotropic":
        s = np.full(2, half.min())
    else:
        raise ValueError(f"unknown intrinsics_format {fmt!r} (expected ndc_norm_image_bounds or ndc_isotropic)")
    f = np.asarray(focal, dtype=np.float64).reshape(2) * s
    c = half - np.asarray(principal, dtype=np.float64).reshape(2) * s
    return intrinsics(f[0], f[1], c[0], c[1])


def pixel_to_ndc_intrinsics(K: np.ndarray, fmt: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `ndc_to_pixel_intrinsics`: K [3, 3] -> (focal [2], principal_point [2]) in NDC."""
    half = np.array([width / 2.0, height / 2.0])
    s = half if fmt.lower() == "ndc_norm_image_bounds" else np.full(2, half.min())
    f = np.array([K[0, 0], K[1, 1]]) / s
    p = (half - np.array([K[0, 2], K[1, 2]])) / s
    return f, p


def quat_to_rotmat(q: np.ndarray, order: str = "wxyz") -> np.ndarray:
    """Unit quaternions [..., 4] (Hamilton; `order` "wxyz" as COLMAP or "xyzw" as TartanAir/scipy)
    -> rotation matrices [..., 3, 3]. Quaternions are normalized; a zero quaternion raises."""
    q = np.asarray(q, dtype=np.float64)
    if order == "xyzw":
        q = q[..., [3, 0, 1, 2]]
    elif order != "wxyz":
        raise ValueError(f"quaternion order must be 'wxyz' or 'xyzw', got {order!r}")
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(n < 1e-12):
        raise ValueError("quaternion of zero length")
    w, x, y, z = np.moveaxis(q / n, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def rotmat_to_quat(R: np.ndarray, order: str = "wxyz") -> np.ndarray:
    """Rotation matrices [..., 3, 3] -> unit quaternions [..., 4] with w >= 0 (inverse of quat_to_rotmat)."""
    R = np.asarray(R, dtype=np.float64)
    m = R.reshape(-1, 3, 3)
    out = np.zeros((m.shape[0], 4))
    for i, r in enumerate(m):
        # largest-diagonal branch for numerical stability
        t = np.trace(r)
        cand = np.array([t, r[0, 0], r[1, 1], r[2, 2]])
        k = int(np.argmax(cand))
        if k == 0:
            s = np.sqrt(1.0 + t) * 2
            q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
        elif k == 1:
            s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
            q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
        elif k == 2:
            s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
            q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
        else:
            s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
            q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
        q = np.array(q)
        out[i] = -q if q[0] < 0 else q
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    if order == "xyzw":
        out = out[:, [1, 2, 3, 0]]
    return out.reshape(R.shape[:-2] + (4,))


def ned_c2w_to_viewmat(t: np.ndarray, q_xyzw: np.ndarray) -> np.ndarray:
    """TartanAir poses (camera-to-world position t [N, 3] and orientation q [N, 4] xyzw of the NED
    body: x forward, y right, z down) -> OpenCV viewmats [N, 4, 4]. The world frame is kept."""
    R_body = quat_to_rotmat(np.asarray(q_xyzw).reshape(-1, 4), order="xyzw")
    c2w = np.zeros((R_body.shape[0], 4, 4))
    c2w[:, :3, :3] = R_body @ _NED_FROM_OPENCV
    c2w[:, :3, 3] = np.asarray(t, dtype=np.float64).reshape(-1, 3)
    c2w[:, 3, 3] = 1.0
    return invert_rigid(c2w)


def viewmat_to_ned_c2w(viewmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `ned_c2w_to_viewmat`: viewmats [N, 4, 4] -> (t [N, 3], q [N, 4] xyzw)."""
    c2w = invert_rigid(np.asarray(viewmat).reshape(-1, 4, 4))
    R_body = c2w[:, :3, :3] @ _NED_FROM_OPENCV.T
    return c2w[:, :3, 3], rotmat_to_quat(R_body, order="xyzw")


def colmap_to_viewmat(qvec_wxyz: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """COLMAP image pose (world-to-camera quaternion wxyz [N, 4], translation [N, 3]) -> viewmats [N, 4, 4]."""
    R = quat_to_rotmat(np.asarray(qvec_wxyz).reshape(-1, 4), order="wxyz")
    out = np.zeros((R.shape[0], 4, 4))
    out[:, :3, :3] = R
    out[:, :3, 3] = np.asarray(tvec, dtype=np.float64).reshape(-1, 3)
    out[:, 3, 3] = 1.0
    return out


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Pixel intrinsics K [3, 3] float64 (no skew)."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def integer_centre_to_half_pixel(K: np.ndarray) -> np.ndarray:
    """K whose pixel (u, v) is the point (u, v) (MATLAB/Bouguet, IDR, MVSNet habit) -> K in foresplat's
    convention where pixel (u, v) is the point (u + 0.5, v + 0.5): adds 0.5 to cx and cy."""
    K = np.array(K, dtype=np.float64)
    K[..., 0, 2] += 0.5
    K[..., 1, 2] += 0.5
    return K


def half_pixel_to_integer_centre(K: np.ndarray) -> np.ndarray:
    """Inverse of `integer_centre_to_half_pixel` (subtracts 0.5 from cx and cy)."""
    K = np.array(K, dtype=np.float64)
    K[..., 0, 2] -= 0.5
    K[..., 1, 2] -= 0.5
    return K


def rq_decompose(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RQ decomposition of a 3x3 matrix: M = U @ Q with U upper triangular with a positive diagonal
    and Q orthonormal (det +1 when det M > 0). Written with a QR of the row-reversed transpose."""
    M = np.asarray(M, dtype=np.float64)
    E = np.flipud(np.eye(3))  # exchange matrix: reverses rows / columns
    Qt, Rt = np.linalg.qr((E @ M).T)  # (E M)^T = Qt Rt  ->  M = E Rt^T Qt^T
    U = E @ Rt.T @ E  # upper triangular
    Q = E @ Qt.T
    S = np.diag(np.sign(np.diag(U)) + (np.diag(U) == 0))  # make the diagonal of U positive
    return U @ S, S @ Q


def decompose_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projection matrix P [3, 4] (or [4, 4] with last row 0 0 0 1) = s K [R | t] -> (K [3, 3] with
    K[2, 2] = 1 and zero skew, viewmat [4, 4] OpenCV world-to-camera). The overall sign of P is
    chosen so that R is a proper rotation (points with positive depth stay in front).

    Raises ValueError for a singular left 3x3 block. Skew is dropped (see `projection_skew`).
    """
    P = np.asarray(P, dtype=np.float64)[:3]
    M = P[:, :3]
    d = np.linalg.det(M)
    if abs(d) < 1e-12 * max(1.0, np.abs(M).max() ** 3):
        raise ValueError("projection matrix has a singular 3x3 block")
    if d < 0:
        P = -P
        M = P[:, :3]
    U, R = rq_decompose(M)
    t = np.linalg.solve(U, P[:, 3])
    K = U / U[2, 2]
    K[0, 1] = 0.0
    view = np.eye(4)
    view[:3, :3] = R
    view[:3, 3] = t
    return K, view


def projection_skew(P: np.ndarray) -> float:
    """The skew K[0, 1] / K[0, 0] of a projection matrix (what `decompose_projection` drops)."""
    P = np.asarray(P, dtype=np.float64)[:3]
    M = P[:, :3] * (1.0 if np.linalg.det(P[:, :3]) > 0 else -1.0)
    U, _ = rq_decompose(M)
    return float(U[0, 1] / U[0, 0])


def strecha_to_viewmat(R: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Strecha `.camera` rotation R [3, 3] (camera-to-world, columns = camera axes in world, OpenCV
    axes) and camera centre C [3] -> OpenCV viewmat [4, 4]: x_cam = R^T (X - C)."""
    R = np.asarray(R, dtype=np.float64)
    view = np.eye(4)
    view[:3, :3] = R.T
    view[:3, 3] = -R.T @ np.asarray(C, dtype=np.float64)
    return view


def viewmat_to_strecha(viewmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `strecha_to_viewmat`: OpenCV viewmat [4, 4] -> (R camera-to-world [3, 3], centre C [3])."""
    v = np.asarray(viewmat, dtype=np.float64)
    R = v[:3, :3].T
    return R, -R @ v[:3, 3]
