"""Ray-primitive intersections for the synthetic scene generator (vectorized torch, float32).

Rays are stored component-major (fast elementwise maths on contiguous rows): origins o [3, N]
and directions d [3, N] (not necessarily unit length). Every intersector returns the ray
parameter t [N] of the first hit with t > eps (+inf where the ray misses), so the hit point is
o + t d. Primitives are intersected in their local frame: the caller maps rays with `to_local`
(a rigid transform leaves t unchanged).

    sphere    radius r, centred at the local origin
    box       half extents h [3], centred at the local origin, axis aligned
    cylinder  radius r, axis local z, from z = -h to z = +h, capped
"""

from __future__ import annotations

import torch

INF = float("inf")


def to_local(o: torch.Tensor, d: torch.Tensor, center: torch.Tensor, rotation: torch.Tensor):
    """World rays o, d [3, N] -> the local frame of a primitive at `center` [3] with local-to-world
    `rotation` [3, 3]: (R^T (o - c), R^T d), both [3, N]."""
    Rt = rotation.T.contiguous()
    return Rt @ (o - center.unsqueeze(-1)), Rt @ d


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-ray dot product of [3, N] tensors -> [N]."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _nearest_root(a, b, c, eps):
    """Smallest root > eps of a t^2 + 2 b t + c = 0 (inf if none) -> [N]."""
    disc = b * b - a * c
    sq = torch.sqrt(disc.clamp(min=0.0))
    t0 = (-b - sq) / a
    t1 = (-b + sq) / a
    t = torch.where(t0 > eps, t0, torch.where(t1 > eps, t1, INF))
    return torch.where(disc >= 0, t, INF)


def intersect_sphere(o: torch.Tensor, d: torch.Tensor, radius: float, eps: float = 1e-4) -> torch.Tensor:
    """First hit t [N] of local rays [3, N] with the sphere |x| = radius."""
    return _nearest_root(_dot(d, d), _dot(o, d), _dot(o, o) - radius * radius, eps)


def _safe(x: torch.Tensor) -> torch.Tensor:
    """Values with |x| >= 1e-12 (sign kept) so that divisions stay finite."""
    return torch.where(x.abs() < 1e-12, torch.where(x < 0, -1e-12, 1e-12), x)


def intersect_box(o: torch.Tensor, d: torch.Tensor, half: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """First hit t [N] of local rays [3, N] with the axis-aligned box |x_i| <= half_i (slab method)."""
    h = half.unsqueeze(-1)
    inv = 1.0 / _safe(d)
    t1 = (-h - o) * inv
    t2 = (h - o) * inv
    near = torch.minimum(t1, t2)
    far = torch.maximum(t1, t2)
    tmin = torch.maximum(torch.maximum(near[0], near[1]), near[2])
    tmax = torch.minimum(torch.minimum(far[0], far[1]), far[2])
    hit = tmax >= tmin.clamp(min=eps)
    return torch.where(hit, torch.where(tmin > eps, tmin, tmax), INF)


def intersect_cylinder(o: torch.Tensor, d: torch.Tensor, radius: float, half_height: float,
                       eps: float = 1e-4) -> torch.Tensor:
    """First hit t [N] of local rays [3, N] with the capped cylinder x^2 + y^2 <= r^2, |z| <= h."""
    a = d[0] * d[0] + d[1] * d[1]
    b = o[0] * d[0] + o[1] * d[1]
    c = o[0] * o[0] + o[1] * o[1] - radius * radius
    side_ok = a >= 1e-12
    a_safe = torch.where(side_ok, a, 1.0)
    disc = b * b - a_safe * c
    side_ok = side_ok & (disc >= 0)
    sq = torch.sqrt(disc.clamp(min=0.0))
    best = torch.full_like(a, INF)
    for sign in (-1.0, 1.0):  # the two side roots
        t = (-b + sign * sq) / a_safe
        z = o[2] + t * d[2]
        ok = side_ok & (t > eps) & (z.abs() <= half_height) & (t < best)
        best = torch.where(ok, t, best)
    dz = _safe(d[2])
    for zc in (-half_height, half_height):  # the two caps
        t = (zc - o[2]) / dz
        x = o[0] + t * d[0]
        y = o[1] + t * d[1]
        ok = (t > eps) & (x * x + y * y <= radius * radius) & (t < best)
        best = torch.where(ok, t, best)
    return best


def intersect_plane(o: torch.Tensor, d: torch.Tensor, point: torch.Tensor, normal: torch.Tensor,
                    max_height: float = INF, eps: float = 1e-4) -> torch.Tensor:
    """First hit t [N] of world rays [3, N] with the plane through `point` [3] with `normal` [3].

    Hits above world height z > max_height are dropped (walls of finite height).
    """
    n = normal.unsqueeze(-1)
    denom = _safe((d * n).sum(0))
    t = ((point.unsqueeze(-1) - o) * n).sum(0) / denom
    ok = t > eps
    if max_height != INF:
        ok = ok & (o[2] + t * d[2] <= max_height)
    return torch.where(ok, t, INF)


def intersect_dome(o: torch.Tensor, d: torch.Tensor, center: torch.Tensor, radius: float) -> torch.Tensor:
    """Exit t [N] of rays [3, N] starting inside the sphere (center [3], radius): always finite."""
    oc = o - center.unsqueeze(-1)
    a = _dot(d, d)
    b = _dot(oc, d)
    c = _dot(oc, oc) - radius * radius  # < 0 inside
    return (-b + torch.sqrt((b * b - a * c).clamp(min=0.0))) / a


def local_normal(kind: str, p: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Outward unit normals [N, 3] at local surface points p [N, 3] (row-major) of a primitive.

    size [3]: sphere (r, r, r), box half extents, cylinder (r, r, h).
    """
    if kind == "sphere":
        return torch.nn.functional.normalize(p, dim=-1)
    if kind == "box":
        q = p / size
        axis = q.abs().argmax(-1, keepdim=True)
        n = torch.zeros_like(p)
        n.scatter_(1, axis, torch.sign(q.gather(1, axis)))
        return n
    if kind == "cylinder":
        radial = p[:, :2].norm(dim=-1) / size[0]
        cap = (p[:, 2].abs() / size[2]) > radial
        side = torch.cat([p[:, :2], torch.zeros_like(p[:, 2:])], -1)
        capn = torch.zeros_like(p)
        capn[:, 2] = torch.sign(p[:, 2])
        return torch.nn.functional.normalize(torch.where(cap.unsqueeze(-1), capn, side), dim=-1)
    raise ValueError(f"local_normal: unknown primitive kind {kind!r}")


def intersect_local(kind: str, o: torch.Tensor, d: torch.Tensor, size: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Dispatch: first hit t [N] of local rays [3, N] with primitive `kind` of `size` [3]."""
    if kind == "sphere":
        return intersect_sphere(o, d, float(size[0]), eps)
    if kind == "box":
        return intersect_box(o, d, size, eps)
    if kind == "cylinder":
        return intersect_cylinder(o, d, float(size[0]), float(size[2]), eps)
    raise ValueError(f"intersect_local: unknown primitive kind {kind!r}")
