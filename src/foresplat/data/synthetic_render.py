"""Ray tracing and Lambertian shading of a `SceneLayout` (vectorized torch, float32, no rasterizer).

    pixel_rays(viewmats [V, 4, 4], Ks [V, 3, 3], view [M], x [M], y [M]) -> (origins [M, 3], dirs [M, 3])
    camera_rays(viewmats, Ks, width, height, offset=(0.5, 0.5)) -> (origins, dirs), each [V, H, W, 3]
    trace(layout, origins [N, 3], dirs [N, 3]) -> (t [N], surface [N] long)
    shade(layout, origins, dirs, shadows=True) -> ShadeResult(rgb [N, 3], t [N], surface [N])

Camera ray directions have camera-frame z = 1, so the hit parameter t IS the camera z-depth.
Surface ids: 0 .. n_objects - 1 primitives, then planes (ground first), -1 the sky dome. The sky
dome encloses every camera, so every camera ray hits something at a finite t.
Shading: albedo * (ambient * (0.75 + 0.25 n_z) + sun * max(n . l, 0) * visibility); visibility
is the fraction of `shadow_dirs` rays from the point not blocked by a primitive. Everything
depends on the surface point only (never on the viewing direction), so colours agree across views.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from foresplat.data.synthetic_geometry import (intersect_dome, intersect_local, intersect_plane,
                                               local_normal, to_local)
from foresplat.data.synthetic_layout import SceneLayout

SHADOW_OFFSET = 1e-3  # shadow ray origins are pushed this far along the normal
CULL_MIN_RAYS = 4096  # below this many rays, bounding-sphere culling is not worth its bookkeeping


@dataclass
class ShadeResult:
    """Shaded rays: rgb [N, 3] in [0, 1], hit parameter t [N] (finite), surface id [N] (long)."""

    rgb: torch.Tensor
    t: torch.Tensor
    surface: torch.Tensor


def pixel_rays(viewmats: torch.Tensor, Ks: torch.Tensor, view: torch.Tensor, x: torch.Tensor,
               y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World rays of camera `view` [M] (long) through image points (x, y) [M] (pixel units, so the
    centre of pixel (u, v) is (u + 0.5, v + 0.5)) -> origins [M, 3], dirs [M, 3] (camera z = 1)."""
    R = viewmats[:, :3, :3]
    centers = -(R.transpose(-1, -2) @ viewmats[:, :3, 3:]).squeeze(-1)  # [V, 3]
    # per view: rows of R (camera axes in world coordinates), centre, and 1/fx, 1/fy, cx, cy
    table = torch.cat([R.reshape(-1, 9), centers, 1.0 / Ks[:, 0, :1], 1.0 / Ks[:, 1, 1:2], Ks[:, :2, 2]], -1)
    per = table[view]  # [M, 16]
    xc = ((x - per[:, 14]) * per[:, 12]).unsqueeze(-1)  # camera-frame x / z, [M, 1]
    yc = ((y - per[:, 15]) * per[:, 13]).unsqueeze(-1)
    dirs = xc * per[:, 0:3] + yc * per[:, 3:6] + per[:, 6:9]  # R^T (xc, yc, 1), [M, 3]
    return per[:, 9:12], dirs


def camera_rays(viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int,
                offset: tuple[float, float] = (0.5, 0.5)) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through (u + offset_x, v + offset_y) of every pixel of every camera: origins and dirs,
    each [V, H, W, 3] (dirs with camera-frame z = 1). OpenCV cameras, see foresplat.cameras."""
    V = viewmats.shape[0]
    u = torch.arange(width, dtype=torch.float32) + offset[0]
    v = torch.arange(height, dtype=torch.float32) + offset[1]
    vv, uu = torch.meshgrid(v, u, indexing="ij")  # [H, W]
    fx, fy = Ks[:, 0, 0].view(V, 1, 1), Ks[:, 1, 1].view(V, 1, 1)
    cx, cy = Ks[:, 0, 2].view(V, 1, 1), Ks[:, 1, 2].view(V, 1, 1)
    d_cam = torch.stack([(uu - cx) / fx, (vv - cy) / fy, torch.ones(V, height, width)], -1)  # [V, H, W, 3]
    R = viewmats[:, :3, :3]  # world-to-camera rotation
    dirs = (d_cam.reshape(V, -1, 3) @ R).reshape(V, height, width, 3)  # R^T d_cam
    centers = -(R.transpose(-1, -2) @ viewmats[:, :3, 3:]).squeeze(-1)  # [V, 3]
    return centers.view(V, 1, 1, 3).expand(V, height, width, 3), dirs


def _sphere_candidates(rays: "_RayStats", center: torch.Tensor, radius: float) -> torch.Tensor:
    """Mask [N] of rays whose forward half-line meets the sphere (center [3], radius)."""
    cx, cy, cz = center.tolist()
    o, d = rays.o, rays.d
    b = rays.od - (cx * d[0] + cy * d[1] + cz * d[2])  # (o - c) . d
    c = rays.oo - 2.0 * (cx * o[0] + cy * o[1] + cz * o[2]) + (cx * cx + cy * cy + cz * cz - radius * radius)
    return (b * b >= rays.dd * c) & ((b <= 0) | (c <= 0))


class _RayStats:
    """Component-major rays o, d [3, N] with the dot products o.o, o.d, d.d [N] that every
    bounding-sphere test reuses."""

    def __init__(self, o: torch.Tensor, d: torch.Tensor):
        self.o, self.d = o, d
        self.oo = o[0] * o[0] + o[1] * o[1] + o[2] * o[2]
        self.od = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
        self.dd = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]


def _trace_cm(layout: SceneLayout, o: torch.Tensor, d: torch.Tensor,
              objects_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`trace` on component-major rays o, d [3, N]; boxes and cylinders are tested only on the
    rays that meet their bounding sphere (the result is the same as testing every ray)."""
    N = o.shape[1]
    if objects_only:
        best = torch.full((N,), float("inf"))
    else:
        best = intersect_dome(o, d, layout.sky.center, layout.sky.radius)
    sid = torch.full((N,), -1, dtype=torch.long)
    stats = _RayStats(o, d) if N >= CULL_MIN_RAYS else None
    for k, obj in enumerate(layout.objects):
        if obj.kind == "sphere" or N < CULL_MIN_RAYS:
            o_l, d_l = to_local(o, d, obj.center, obj.rotation)
            t = intersect_local(obj.kind, o_l, d_l, obj.size)
            closer = t < best
            best = torch.where(closer, t, best)
            sid = torch.where(closer, k, sid)
            continue
        idx = _sphere_candidates(stats, obj.center, obj.bound_radius * 1.001 + 1e-3).nonzero().squeeze(-1)
        if idx.numel() == 0:
            continue
        o_l, d_l = to_local(o[:, idx], d[:, idx], obj.center, obj.rotation)
        t = intersect_local(obj.kind, o_l, d_l, obj.size)
        closer = t < best[idx]
        best[idx] = torch.where(closer, t, best[idx])
        sid[idx] = torch.where(closer, k, sid[idx])
    if not objects_only:
        base = len(layout.objects)
        for k, pl in enumerate(layout.planes):
            t = intersect_plane(o, d, pl.point, pl.normal, pl.max_height)
            closer = t < best
            best = torch.where(closer, t, best)
            sid = torch.where(closer, base + k, sid)
    return best, sid


def trace(layout: SceneLayout, origins: torch.Tensor, dirs: torch.Tensor,
          objects_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest hit of rays origins, dirs [N, 3]: t [N] and surface id [N] (see module docstring).

    With objects_only, only primitives are tested (misses get t = inf, id -1): shadow rays.
    """
    return _trace_cm(layout, origins.T.contiguous(), dirs.T.contiguous(), objects_only)


def visibility(layout: SceneLayout, points: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Fraction [M] of the light's shadow rays from surface points [M, 3] (unit normals [M, 3])
    that no primitive blocks."""
    dirs = layout.light.shadow_dirs  # [S, 3]
    S, M = dirs.shape[0], points.shape[0]
    o = (points + SHADOW_OFFSET * normals).T.unsqueeze(1).expand(3, S, M).reshape(3, -1)  # [3, S*M]
    d = dirs.T.unsqueeze(-1).expand(3, S, M).reshape(3, -1)
    t, _ = _trace_cm(layout, o, d, objects_only=True)
    return torch.isinf(t).view(S, M).float().mean(0)


def _surface_frame(layout: SceneLayout, k: int, points: torch.Tensor, dirs: torch.Tensor):
    """Albedo [M, 3] and unit normal [M, 3] (facing the ray for planes) of surface k at points [M, 3]."""
    n_obj = len(layout.objects)
    if k < n_obj:
        obj = layout.objects[k]
        p_local = (points - obj.center) @ obj.rotation  # R^T (p - c), [M, 3]
        normals = local_normal(obj.kind, p_local, obj.size) @ obj.rotation.T
        return obj.texture.albedo(p_local), normals
    pl = layout.planes[k - n_obj]
    facing = torch.where((dirs @ pl.normal) > 0, -1.0, 1.0).unsqueeze(-1)  # two-sided
    uv = (points - pl.point) @ pl.basis.T  # [M, 3] in-plane coordinates, third ~ 0
    uv[:, 2] = 0.0  # exactly on the plane: no lattice flicker from rounding
    albedo = pl.texture.albedo(uv)
    if pl.fade_center is not None and pl.fade_radius != float("inf"):
        w = torch.exp(-((points - pl.fade_center).norm(dim=-1) / pl.fade_radius) ** 2).unsqueeze(-1)
        albedo = torch.lerp(pl.texture.mean_color().expand_as(albedo), albedo, w)
    return albedo, facing * pl.normal


def shade(layout: SceneLayout, origins: torch.Tensor, dirs: torch.Tensor, shadows: bool = True) -> ShadeResult:
    """Traces and shades rays origins/dirs [N, 3] (see module docstring) -> ShadeResult."""
    t, sid = trace(layout, origins, dirs)
    order = torch.argsort(sid, stable=True)  # rays grouped by surface, sky (-1) first
    counts = torch.bincount(sid + 1, minlength=1 + len(layout.objects) + len(layout.planes)).tolist()
    p_sorted = (origins[order] + t[order].unsqueeze(-1) * dirs[order])  # [N, 3]
    d_sorted = dirs[order]
    rgb_sorted = torch.empty_like(p_sorted)
    n_sky = counts[0]
    rgb_sorted[:n_sky] = layout.sky.color(p_sorted[:n_sky])
    albedo = torch.empty(p_sorted.shape[0] - n_sky, 3)
    normals = torch.empty_like(albedo)
    start = n_sky
    for k, cnt in enumerate(counts[1:]):
        if cnt == 0:
            continue
        sl = slice(start, start + cnt)
        local = slice(start - n_sky, start - n_sky + cnt)
        albedo[local], normals[local] = _surface_frame(layout, k, p_sorted[sl], d_sorted[sl])
        start += cnt
    if albedo.shape[0] > 0:
        lit = (normals @ layout.light.direction).clamp(min=0.0)  # [M]
        if shadows:
            front = (lit > 0).nonzero().squeeze(-1)
            if front.numel() > 0:
                pts = p_sorted[n_sky:][front]
                lit[front] = lit[front] * visibility(layout, pts, normals[front])
        ambient = layout.light.ambient * (0.75 + 0.25 * normals[:, 2:3])  # [M, 3]
        rgb_sorted[n_sky:] = albedo * (ambient + lit.unsqueeze(-1) * layout.light.color)
    rgb = torch.empty_like(rgb_sorted)
    rgb[order] = rgb_sorted.clamp(0.0, 1.0)
    return ShadeResult(rgb, t, sid)


def shade_chunked(layout: SceneLayout, origins: torch.Tensor, dirs: torch.Tensor, shadows: bool,
                  chunk: int) -> ShadeResult:
    """`shade` over rays [N, 3] in chunks of `chunk` rays (bounds peak memory)."""
    parts = [shade(layout, origins[i:i + chunk], dirs[i:i + chunk], shadows)
             for i in range(0, origins.shape[0], chunk)]
    if len(parts) == 1:
        return parts[0]
    return ShadeResult(torch.cat([p.rgb for p in parts]), torch.cat([p.t for p in parts]),
                       torch.cat([p.surface for p in parts]))
