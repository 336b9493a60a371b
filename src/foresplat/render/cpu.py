"""The `cpu` backend: a native tiled C++/OpenMP rasterizer (csrc/rasterize.cpp) with a hand-written backward.

The kernel is compiled on first use with torch.utils.cpp_extension into TORCH_EXTENSIONS_DIR (kept in
the venv by foresplat._env.configure_caches). Everything is native: the EWA projection and SH colours
(csrc/project.h, the maths of projection.py / sh.py) and the raster pass (csrc/raster.h: binning into
16x16 tiles, depth-sorted per-tile lists, front-to-back compositing with early stop, back-to-front
gradient replay), each with a hand-written backward to means, quats, scales, opacities, colours / SH
coefficients and viewmats. Gradients w.r.t. Ks are not implemented natively: when Ks requires grad the
projection runs in PyTorch (autograd) and only the raster pass is native.
Differentiable ONCE: a double backward raises a RuntimeError (use the reference backend for
second-order gradients). Deterministic (no atomics: per-entry gradient slots reduced serially in a
fixed order), independent of the thread count (torch.get_num_threads() threads are used).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from foresplat.render.constants import ALPHA_MIN
from foresplat.render.projection import RADIUS_SIGMAS, Projection

_CSRC = Path(__file__).resolve().parent / "csrc"
_SOURCES = ("rasterize.cpp", "raster.h", "project.h")
_ext: Any = None  # the loaded extension module
_error: str | None = None  # why building / loading it failed (then it is not retried)


def _build_spec() -> tuple[str, list[str]]:
    """Extension name and compiler flags. AVX2 + FMA only when the running CPU reports them and
    FORESPLAT_CPU_PORTABLE is unset (else portable 16-byte-vector code from the same source). The
    name carries a hash of the sources and flags, because torch's JIT build only tracks the .cpp
    file, not the headers it includes. No implicit FMA contraction (-ffp-contract=off): forward and
    backward must recompute bit-identical alphas; the kernels use explicit FMAs instead."""
    flags = ["-O3", "-fopenmp", "-ffp-contract=off"]
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:  # old torch without the probe: stay portable
        cap = "DEFAULT"
    if cap in ("AVX2", "AVX512") and not os.environ.get("FORESPLAT_CPU_PORTABLE"):
        flags += ["-mavx2", "-mfma"]  # torch reports AVX2 only when FMA is present too
    digest = hashlib.sha1(" ".join(flags).encode())
    for name in _SOURCES:
        digest.update((_CSRC / name).read_bytes())
    return f"foresplat_raster_cpu_{digest.hexdigest()[:10]}", flags


def load_extension():
    """Compiles (first call) and imports the native kernel; raises RuntimeError if that fails."""
    global _ext, _error
    if _ext is not None:
        return _ext
    if _error is not None:
        raise RuntimeError(_error)
    from foresplat._env import configure_caches

    configure_caches()
    try:
        from torch.utils.cpp_extension import load

        name, flags = _build_spec()
        _ext = load(name=name, sources=[str(_CSRC / "rasterize.cpp")], extra_cflags=flags,
                    extra_ldflags=["-fopenmp"], verbose=bool(os.environ.get("FORESPLAT_VERBOSE_BUILD")))
    except Exception as exc:  # compiler missing, headers missing, ...: remembered, reported once
        first = str(exc).strip().splitlines()
        _error = (f"native cpu kernel build failed: {type(exc).__name__}: {first[0] if first else ''} "
                  "(FORESPLAT_VERBOSE_BUILD=1 shows the compiler output)")
        raise RuntimeError(_error) from exc
    return _ext


def cpu_backend_available() -> bool:
    """True if the native kernel builds/loads (compiles it on the first call)."""
    try:
        load_extension()
    except RuntimeError:
        return False
    return True


def cpu_build_error() -> str | None:
    """Why the native kernel is unavailable (None if it loaded or was never tried)."""
    return _error


def binning_radii(proj: Projection, opacities: torch.Tensor) -> torch.Tensor:
    """Opacity-aware box half-sizes [C, N, 2] int32 for tile binning (gsplat 1.5 rule).

    Outside ceil(k sqrt(cov2d_ii)) with k = min(3.33, sqrt(2 ln(255 opacity))) every alpha is below
    1/255, so binning with these boxes changes no pixel; Gaussians with opacity < 1/255 are dropped.
    """
    with torch.no_grad():
        op = opacities.detach().to(proj.covars2d.dtype)
        k = torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_MIN) / ALPHA_MIN)).clamp_max(RADIUS_SIGMAS)
        cov = proj.covars2d.detach()
        r = torch.stack([torch.ceil(k * torch.sqrt(cov[..., 0].clamp_min(0))),
                         torch.ceil(k * torch.sqrt(cov[..., 2].clamp_min(0)))], dim=-1).clamp_min(1)
        keep = proj.visible & (op >= ALPHA_MIN)
        return torch.where(keep.unsqueeze(-1), r, torch.zeros_like(r)).to(torch.int32).contiguous()


class _RasterizeCPU(torch.autograd.Function):
    """Native raster pass of projected Gaussians: (means2d, conics, colors, opacities, depths,
    backgrounds) -> (colors, alphas, depths) images."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, depths, backgrounds, radii, width, height):
        ext = load_extension()
        bg = backgrounds if backgrounds is not None else means2d.new_zeros(0)
        rgb, alpha, depth, t_final, last, offsets, ids = ext.forward(
            means2d, conics, colors, opacities, depths, radii, width, height, bg)
        ctx.save_for_backward(means2d, conics, colors, opacities, depths, radii, bg, offsets, ids, t_final,
                              last, depth)
        return rgb, alpha, depth

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_rgb, g_alpha, g_depth):
        means2d, conics, colors, opacities, depths, radii, bg, offsets, ids, t_final, last, depth = \
            ctx.saved_tensors
        g_rgb, g_alpha, g_depth = _dense_grads(g_rgb, g_alpha, g_depth, t_final)
        g_m2d, g_con, g_col, g_op, g_dep, g_bg = load_extension().backward(
            means2d, conics, colors, opacities, depths, radii, offsets, ids, t_final, last, depth, bg,
            g_rgb, g_alpha, g_depth)
        return (g_m2d, g_con, g_col, g_op, g_dep, g_bg if ctx.needs_input_grad[5] else None, None, None,
                None)


def _dense_grads(g_rgb, g_alpha, g_depth, t_final):
    """Output gradients as contiguous tensors (autograd passes None for unused outputs)."""
    c, h, w = t_final.shape
    g_rgb = t_final.new_zeros(c, h, w, 3) if g_rgb is None else g_rgb.contiguous()
    g_alpha = t_final.new_zeros(c, h, w, 1) if g_alpha is None else g_alpha.contiguous()
    g_depth = t_final.new_zeros(c, h, w, 1) if g_depth is None else g_depth.contiguous()
    return g_rgb, g_alpha, g_depth


class _RenderCPU(torch.autograd.Function):
    """Native projection + SH + raster: raw inputs -> (colors, alphas, depths) images."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, colors, viewmats, backgrounds, Ks, sh_degree, width,
                height, eps2d, near_plane, far_plane):
        ext = load_extension()
        deg = -1 if sh_degree is None else int(sh_degree)
        sh = colors if deg >= 0 else colors.new_zeros(0)
        means2d, conics, depths, radii, sh_rgb = ext.project_forward(
            means, quats, scales, opacities, viewmats, Ks, sh, deg, width, height, eps2d, near_plane,
            far_plane)
        rgb_in = sh_rgb if deg >= 0 else colors
        bg = backgrounds if backgrounds is not None else means.new_zeros(0)
        rgb, alpha, depth, t_final, last, offsets, ids = ext.forward(
            means2d, conics, rgb_in, opacities, depths, radii, width, height, bg)
        ctx.save_for_backward(means, quats, scales, opacities, viewmats, Ks, sh, means2d, conics, rgb_in,
                              depths, radii, bg, offsets, ids, t_final, last, depth)
        ctx.cfg = (deg, width, height, eps2d, near_plane, far_plane)
        return rgb, alpha, depth

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_rgb, g_alpha, g_depth):
        (means, quats, scales, opacities, viewmats, Ks, sh, means2d, conics, rgb_in, depths, radii, bg,
         offsets, ids, t_final, last, depth) = ctx.saved_tensors
        deg, width, height, eps2d, near_plane, far_plane = ctx.cfg
        ext = load_extension()
        g_rgb, g_alpha, g_depth = _dense_grads(g_rgb, g_alpha, g_depth, t_final)
        g_m2d, g_con, g_col, g_op, g_dep, g_bg = ext.backward(
            means2d, conics, rgb_in, opacities, depths, radii, offsets, ids, t_final, last, depth, bg,
            g_rgb, g_alpha, g_depth)
        g_means, g_quats, g_scales, g_view, g_sh = ext.project_backward(
            means, quats, scales, viewmats, Ks, sh, deg, width, height, eps2d, near_plane, far_plane,
            radii, g_m2d, g_con, g_dep, g_col)
        g_colors = g_sh if deg >= 0 else g_col
        return (g_means, g_quats, g_scales, g_op, g_colors, g_view,
                g_bg if ctx.needs_input_grad[6] else None, None, None, None, None, None, None, None)


def render_cpu(
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fully native render of validated `rasterization` inputs (colors: SH [N, K, 3] when sh_degree is
    set, else RGB [C, N, 3]; backgrounds [C, 3] or None). Returns colours [C, H, W, 3], alphas and
    depths [C, H, W, 1]. Ks must not require grad (use rasterize_cpu on a PyTorch projection then)."""
    return _RenderCPU.apply(
        means.contiguous(), quats.contiguous(), scales.contiguous(), opacities.contiguous(),
        colors.contiguous(), viewmats.contiguous(), None if backgrounds is None else backgrounds.contiguous(),
        Ks.detach().contiguous(), sh_degree, int(width), int(height), float(eps2d), float(near_plane),
        float(far_plane))


def rasterize_cpu(
    proj: Projection,
    colors: torch.Tensor,
    opacities: torch.Tensor,
    width: int,
    height: int,
    backgrounds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tiled native compositing of projected Gaussians (same semantics as reference.rasterize_reference).

    proj: Projection of N Gaussians into C cameras; colors [C, N, 3]; opacities [N] (activated);
    backgrounds [C, 3] or None. Returns colours [C, H, W, 3], alphas [C, H, W, 1], depths [C, H, W, 1].
    """
    radii = binning_radii(proj, opacities)
    return _RasterizeCPU.apply(
        proj.means2d.contiguous(), proj.conics.contiguous(), colors.contiguous(), opacities.contiguous(),
        proj.depths.contiguous(), None if backgrounds is None else backgrounds.contiguous(), radii,
        int(width), int(height))
