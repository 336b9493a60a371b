"""`rasterization` (gsplat-style functional API) and `render` (Gaussians + Cameras) with backend dispatch.

Backends:
    reference  dense pure PyTorch (render/reference.py): exact spec, twice differentiable, slow
    cpu        native C++/OpenMP: projection, SH and a tiled rasterizer, each with a hand-written
               backward (render/cpu.py; compiled on first use). Gradients for every input; when
               Ks requires grad the projection runs in PyTorch instead. Once differentiable
               only: a double backward through it raises a RuntimeError.
    gsplat     gsplat.rasterization (CUDA tensors only, imported lazily)
    auto       gsplat for CUDA tensors when gsplat imports, else cpu; if the native build fails, a
               one-line warning and the reference backend.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from foresplat.render.projection import project_gaussians
from foresplat.render.reference import rasterize_reference
from foresplat.render.sh import sh_to_colors
from foresplat.render.validate import validate_inputs

BACKENDS = ("auto", "reference", "cpu", "gsplat")


@dataclass
class RenderOutput:
    """Rendered images: colors [C, H, W, 3] (background included), alphas [C, H, W, 1] = 1 - final
    transmittance, depths [C, H, W, 1] expected camera z = sum(w z) / alpha (0 where alpha = 0)."""

    colors: torch.Tensor
    alphas: torch.Tensor
    depths: torch.Tensor


_warned_fallback = False


def _gsplat_available() -> bool:
    try:
        import gsplat  # noqa: F401
    except Exception:  # gsplat may fail to import for many reasons (missing CUDA libs, ABI, ...)
        return False
    return True


def available_backends() -> list[str]:
    """Backends usable in this process (may compile the native cpu kernel on first call)."""
    from foresplat.render.cpu import cpu_backend_available

    names = ["reference"]
    if cpu_backend_available():
        names.append("cpu")
    if torch.cuda.is_available() and _gsplat_available():
        names.append("gsplat")
    return names


def resolve_backend(backend: str, device: torch.device) -> str:
    """Maps "auto" to a concrete backend for tensors on `device`; checks explicit choices."""
    global _warned_fallback
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "gsplat":
        if device.type != "cuda":
            raise RuntimeError(f"backend='gsplat' needs CUDA tensors, got tensors on {device}; "
                               "use backend='cpu' or 'auto'")
        if not _gsplat_available():
            raise RuntimeError("backend='gsplat': the gsplat package could not be imported "
                               "(pip install gsplat)")
        return backend
    if backend == "auto":
        if device.type == "cuda" and _gsplat_available():
            return "gsplat"
        from foresplat.render.cpu import cpu_backend_available, cpu_build_error

        if device.type == "cpu" and cpu_backend_available():
            return "cpu"
        if not _warned_fallback:
            why = cpu_build_error() if device.type == "cpu" else f"no native kernel for {device}"
            warnings.warn(f"foresplat.render: fast backend unavailable ({why}); using the slow "
                          "reference rasterizer", RuntimeWarning, stacklevel=3)
            _warned_fallback = True
        return "reference"
    if backend == "cpu" and device.type != "cpu":
        raise RuntimeError(f"backend='cpu' needs CPU tensors, got tensors on {device}")
    return backend


def _camera_centers(viewmats: torch.Tensor) -> torch.Tensor:
    """World camera centres [C, 3] = -R^T t of world-to-camera viewmats [C, 4, 4]."""
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3:]
    return -(R.transpose(-1, -2) @ t).squeeze(-1)


def _empty_output(inputs: list[torch.Tensor], bg: torch.Tensor | None, C: int, width: int, height: int,
                  like: torch.Tensor) -> RenderOutput:
    """Output for N = 0: the background, connected (with zero gradient) to every input."""
    zero = sum((t.sum() * 0.0 for t in inputs), like.new_zeros(()))
    colors = like.new_zeros(C, height, width, 3) + zero
    if bg is not None:
        colors = colors + bg[:, None, None, :]
    return RenderOutput(colors, like.new_zeros(C, height, width, 1) + zero,
                        like.new_zeros(C, height, width, 1) + zero)


def _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                      sh_degree, bg, near_plane, far_plane, eps2d) -> RenderOutput:
    import gsplat

    rgbd, alphas, _ = gsplat.rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree,
        backgrounds=bg, render_mode="RGB+ED", packed=False)
    return RenderOutput(rgbd[..., :3], alphas, rgbd[..., 3:4])


def rasterization(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    backgrounds: torch.Tensor | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backend: str = "auto",
) -> RenderOutput:
    """Renders N 3D Gaussians into C pinhole cameras (semantics and argument names of gsplat).

    means [N, 3] world positions; quats [N, 4] (w, x, y, z), normalized inside; scales [N, 3]
    ACTIVATED standard deviations; opacities [N] ACTIVATED in [0, 1]; colors: RGB [N, 3] or
    [C, N, 3] when sh_degree is None, else SH coefficients [N, K, 3] (first (sh_degree+1)^2 used,
    colour = max(SH(mean - camera centre) + 0.5, 0)); viewmats [C, 4, 4] OpenCV world-to-camera;
    Ks [C, 3, 3] pixel intrinsics (pixel centres at +0.5); backgrounds [C, 3] or [3], added as
    T_final * bg. Differentiable w.r.t. every float input (see module docstring for the backends).
    """
    validate_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree,
                    backgrounds, near_plane, far_plane, eps2d)
    width, height = int(width), int(height)
    C = viewmats.shape[0]
    bg = None if backgrounds is None else backgrounds.expand(C, 3)
    name = resolve_backend(backend, means.device)
    if name == "gsplat":
        return _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                 sh_degree, bg, near_plane, far_plane, eps2d)
    if means.shape[0] == 0:
        return _empty_output([means, quats, scales, opacities, colors, viewmats, Ks], bg, C, width,
                             height, means)
    if name == "cpu" and not Ks.requires_grad:  # fully native path
        from foresplat.render.cpu import render_cpu

        rgb = colors if sh_degree is not None or colors.dim() == 3 else colors.unsqueeze(0).expand(C, -1, -1)
        out = render_cpu(means, quats, scales, opacities, rgb, viewmats, Ks, width, height, sh_degree, bg,
                         near_plane, far_plane, eps2d)
        return RenderOutput(*out)
    proj = project_gaussians(means, quats, scales, viewmats, Ks, width, height, eps2d=eps2d,
                             near_plane=near_plane, far_plane=far_plane)
    if sh_degree is None:
        rgb = colors if colors.dim() == 3 else colors.unsqueeze(0).expand(C, -1, -1)  # [C, N, 3]
    else:
        rgb = sh_to_colors(sh_degree, means, colors, _camera_centers(viewmats))  # [C, N, 3]
    if name == "reference":
        out = rasterize_reference(proj.means2d, proj.conics, rgb, opacities, proj.depths, proj.radii,
                                  width, height, bg)
    else:  # cpu raster on a PyTorch projection: gradients reach Ks through autograd
        from foresplat.render.cpu import rasterize_cpu

        out = rasterize_cpu(proj, rgb, opacities, width, height, bg)
    return RenderOutput(*out)


def render(gaussians, cameras, *, backgrounds: torch.Tensor | None = None, backend: str = "auto",
           near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3) -> RenderOutput:
    """Renders raw `Gaussians` (unbatched, N) into `Cameras` (C): applies the activations
    (unit quats, exp scales, sigmoid opacities) and calls `rasterization` with
    sh_degree = gaussians.sh_degree. Returns colors [C, H, W, 3], alphas and depths [C, H, W, 1]."""
    if gaussians.batch_shape:
        raise ValueError(f"render: expects unbatched Gaussians [N, ...], got batch shape "
                         f"{list(gaussians.batch_shape)}; render each scene separately")
    if cameras.viewmats.dim() != 3:
        raise ValueError(f"render: expects unbatched cameras viewmats [C, 4, 4], got "
                         f"{list(cameras.viewmats.shape)}")
    return rasterization(gaussians.means, gaussians.unit_quats(), gaussians.scales(),
                         gaussians.opacities(), gaussians.sh, cameras.viewmats, cameras.Ks,
                         cameras.width, cameras.height, sh_degree=gaussians.sh_degree,
                         backgrounds=backgrounds, near_plane=near_plane, far_plane=far_plane,
                         eps2d=eps2d, backend=backend)
