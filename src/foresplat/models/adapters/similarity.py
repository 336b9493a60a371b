"""Pose-free models: fit their predicted cameras to the given ones, and move Gaussians by that similarity.

    sim = fit_cameras(pred_c2w [V,4,4], given_c2w [V,4,4])    # x_world = s R x_model + t, with residuals
    g_world = transform_gaussians(g_model, sim)               # means, scales, rotations, SH of any degree
    sims = fit_batch(pred_c2w [B,V,4,4], viewmats [B,V,4,4])  # one fit per scene (None without viewmats)
    g_world = align_batch(g_model [B,N], sims)

The fit is the one used to evaluate pose-free methods: R = the rotation nearest (SVD, det +1) to the
sum of the per-view relative rotations R_given R_pred^T; then s and t are the least-squares fit of
the camera centres given R. Needs V >= 2 views with distinct predicted centres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from foresplat.gaussians import Gaussians
from foresplat.models.geometry import matrix_to_quat, quat_multiply
from foresplat.render.sh import eval_sh_bases


@dataclass
class Similarity:
    """x -> scale * R @ x + t, with the per-view residuals of the camera fit that produced it."""

    scale: torch.Tensor  # [] > 0
    R: torch.Tensor  # [3, 3] proper rotation
    t: torch.Tensor  # [3]
    rotation_error_deg: torch.Tensor  # [V] angle between each fitted and given camera rotation
    centre_error: torch.Tensor  # [V] distance between each fitted and given camera centre (world units)
    relative_centre_error: torch.Tensor  # [V] centre_error / RMS spread of the given centres

    def summary(self) -> dict[str, float]:
        """Scalars for logs and JSON: scale and mean / max residuals."""
        return {"scale": float(self.scale), "rotation_error_deg_mean": float(self.rotation_error_deg.mean()),
                "rotation_error_deg_max": float(self.rotation_error_deg.max()),
                "centre_error_mean": float(self.centre_error.mean()),
                "relative_centre_error_mean": float(self.relative_centre_error.mean())}


def fit_cameras(pred_c2w: torch.Tensor, given_c2w: torch.Tensor) -> Similarity:
    """Similarity taking the predicted cameras' frame onto the given one (module docstring).

    pred_c2w, given_c2w [V, 4, 4] camera-to-world (OpenCV), V >= 2. Computed in float64."""
    if pred_c2w.shape != given_c2w.shape or pred_c2w.dim() != 3 or pred_c2w.shape[-2:] != (4, 4):
        raise ValueError(f"fit_cameras: expected two [V, 4, 4] camera-to-world stacks, got "
                         f"{list(pred_c2w.shape)} and {list(given_c2w.shape)}")
    V = pred_c2w.shape[0]
    if V < 2:
        raise ValueError(f"fit_cameras: aligning predicted cameras needs >= 2 views, got {V}")
    P, G = pred_c2w.detach().double(), given_c2w.detach().double()
    Rp, Rg, cp, cg = P[:, :3, :3], G[:, :3, :3], P[:, :3, 3], G[:, :3, 3]
    U, _, Vh = torch.linalg.svd((Rg @ Rp.transpose(-1, -2)).sum(0))
    D = torch.diag(torch.stack([U.new_tensor(1.0), U.new_tensor(1.0), torch.det(U @ Vh)]))
    R = U @ D @ Vh  # [3, 3]
    xp, xg = cp - cp.mean(0), cg - cg.mean(0)  # [V, 3]
    var = (xp ** 2).sum()
    if float(var) <= 1e-12 * max(float((xg ** 2).sum()), 1e-30):
        raise ValueError("fit_cameras: the predicted camera centres coincide; no scale can be fitted")
    s = ((xp @ R.T) * xg).sum() / var
    if float(s) <= 0:
        raise ValueError(f"fit_cameras: the best-fitting scale is {float(s):.4g} <= 0 (predicted and given "
                         "camera centres disagree)")
    t = cg.mean(0) - s * (R @ cp.mean(0))
    fitted_R = R @ Rp  # [V, 3, 3]
    cos = (((fitted_R * Rg).sum((-1, -2)) - 1) / 2).clamp(-1, 1)
    err = (cp @ R.T * s + t - cg).norm(dim=-1)  # [V]
    spread = xg.pow(2).sum(-1).mean().sqrt().clamp_min(1e-12)
    return Similarity(s, R, t, torch.rad2deg(torch.acos(cos)), err, err / spread)


def sh_rotation(R: torch.Tensor, num_sh: int) -> torch.Tensor:
    """[K, K] matrix M with sum_k M[j,k] c_k the coefficients of the colour field rotated by R [3, 3].

    Rotating f(d) = sum_k c_k Y_k(d) gives f'(d) = f(R^T d), again in the span of degrees <= d; M is
    solved exactly (least squares, zero residual) on 64 well-spread unit directions (degrees 0-3, the
    3DGS basis of foresplat.render.sh)."""
    degree = {1: 0, 4: 1, 9: 2, 16: 3}.get(num_sh)
    if degree is None:
        raise ValueError(f"sh: expected (d+1)^2 in (1, 4, 9, 16) coefficients, got {num_sh}")
    n = 64
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (3 - math.sqrt(5)) * i
    r = (1 - z * z).sqrt()
    dirs = torch.stack([r * phi.cos(), r * phi.sin(), z], -1)  # [n, 3] Fibonacci sphere
    Rd = R.detach().double().to("cpu")
    A = eval_sh_bases(degree, dirs)  # [n, K]
    B = eval_sh_bases(degree, dirs @ Rd)  # [n, K], rows Y(R^T d)
    return torch.linalg.lstsq(A, B).solution  # [K, K] = M: A M c = B c for every c


def transform_gaussians(g: Gaussians, sim: Similarity) -> Gaussians:
    """Gaussians [..., N] in the source frame -> the same splat in the target frame of `sim`.

    means s R x + t, log_scales + log s, quats q(R) * q, SH rotated band by band; opacities unchanged."""
    dt, dev = g.means.dtype, g.means.device
    R, s, t = sim.R.to(dev, dt), sim.scale.to(dev, dt), sim.t.to(dev, dt)
    qR = matrix_to_quat(sim.R.double()).to(dev, dt)  # [4] w, x, y, z
    M = sh_rotation(sim.R, g.sh.shape[-2]).to(dev, dt)  # [K, K]
    return Gaussians(s * g.means @ R.T + t, quat_multiply(qR.expand_as(g.quats), g.quats),
                     g.log_scales + torch.log(s), g.opacity_logits, M @ g.sh)


def fit_batch(pred_c2w: torch.Tensor, viewmats: torch.Tensor | None) -> list[Similarity] | None:
    """Predicted camera-to-world [B, V, 4, 4] fitted to the given OpenCV world-to-camera viewmats [B, V, 4, 4]
    scene by scene -> B similarities (model frame -> given frame); None when no cameras are given."""
    if viewmats is None:
        return None
    given = torch.linalg.inv(viewmats.double())
    return [fit_cameras(pred_c2w[b], given[b]) for b in range(pred_c2w.shape[0])]


def align_batch(g: Gaussians, sims: list[Similarity] | None) -> Gaussians:
    """Gaussians [B, N] in the model frame -> the given frame, scene b moved by sims[b]; unchanged for None."""
    if sims is None:
        return g
    return Gaussians.stack([transform_gaussians(g[b], sim) for b, sim in enumerate(sims)])
