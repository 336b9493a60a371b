"""Random scene layouts for the synthetic generator: primitives, planes, sky, light and cameras.

`sample_layout(seed, config) -> SceneLayout` draws everything from one torch.Generator seeded with
`seed`, so a layout (and the scene rendered from it) is a pure function of (seed, config).
World frame: z up, ground plane z = 0, scene centre above the origin. Cameras are OpenCV
world-to-camera matrices made with foresplat.cameras.look_at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from foresplat.cameras import look_at
from foresplat.data.synthetic_config import BACKGROUND_KINDS, SyntheticConfig
from foresplat.data.synthetic_textures import Texture, fbm, hsv_to_rgb, sample_palette, sample_texture

UP = torch.tensor([0.0, 0.0, 1.0])


@dataclass
class Primitive:
    """A textured primitive: kind, centre [3], local-to-world rotation [3, 3], size [3], texture.

    size: sphere (r, r, r); box half extents (hx, hy, hz); cylinder (r, r, half height), axis local z.
    """

    kind: str
    center: torch.Tensor
    rotation: torch.Tensor
    size: torch.Tensor
    texture: Texture

    @property
    def bound_radius(self) -> float:
        """Radius of a sphere around `center` that contains the primitive."""
        if self.kind == "sphere":
            return float(self.size[0])
        if self.kind == "box":
            return float(self.size.norm())
        return float(torch.hypot(self.size[0], self.size[2]))


@dataclass
class Plane:
    """A textured two-sided plane through `point` [3] with unit `normal` [3]; `basis` [3, 3] rows
    (e1, e2, normal) give the in-plane texture frame; hits above z = max_height are dropped."""

    point: torch.Tensor
    normal: torch.Tensor
    basis: torch.Tensor
    texture: Texture
    max_height: float = float("inf")
    fade_center: torch.Tensor | None = None
    """Texture contrast fades to the texture's mean colour with distance from this point [3]..."""
    fade_radius: float = float("inf")
    """...with weight exp(-(distance / fade_radius)^2): less aliasing toward the horizon."""


@dataclass
class Sky:
    """Emissive sky dome (centre [3], radius): a horizon-to-zenith gradient with value-noise clouds."""

    center: torch.Tensor
    radius: float
    horizon: torch.Tensor
    zenith: torch.Tensor
    cloud_color: torch.Tensor
    cloud_amount: float
    cloud_frequency: float
    noise_table: torch.Tensor

    def color(self, points: torch.Tensor) -> torch.Tensor:
        """Sky radiance [N, 3] at dome points [N, 3] (a function of the point only)."""
        rel = (points - self.center) / self.radius  # [N, 3], on the unit sphere
        e = rel[:, 2].clamp(0.0, 1.0).pow(0.6).unsqueeze(-1)
        base = torch.lerp(self.horizon.expand_as(points), self.zenith.expand_as(points), e)
        if self.cloud_amount <= 0.0:
            return base
        n = fbm(rel * self.cloud_frequency, self.noise_table, 4)  # [N]
        c = ((n - (1.0 - self.cloud_amount)) / 0.25).clamp(0.0, 1.0).unsqueeze(-1)
        return torch.lerp(base, self.cloud_color.expand_as(points), c * 0.85)


@dataclass
class Light:
    """Directional light: `direction` [3] toward the light, `color` [3] (with intensity), ambient
    colour [3], and `shadow_dirs` [S, 3] jittered over the light's disc for soft shadows."""

    direction: torch.Tensor
    color: torch.Tensor
    ambient: torch.Tensor
    shadow_dirs: torch.Tensor


@dataclass
class SceneLayout:
    """Everything needed to ray-trace one synthetic scene (see module docstring)."""

    seed: int
    rig: str
    background: str
    center: torch.Tensor
    objects: list[Primitive]
    planes: list[Plane]
    sky: Sky
    light: Light
    viewmats: torch.Tensor
    Ks: torch.Tensor
    width: int
    height: int
    info: dict = field(default_factory=dict)


def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=g))


def _rot_z(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _random_rotation(g: torch.Generator) -> torch.Tensor:
    """A uniformly random rotation matrix [3, 3] (from a random unit quaternion)."""
    q = torch.nn.functional.normalize(torch.randn(4, generator=g), dim=0)
    w, x, y, z = q.tolist()
    return torch.tensor([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _plane_basis(normal: torch.Tensor) -> torch.Tensor:
    """Rows (e1, e2, normal) of an orthonormal frame with the given unit normal [3]."""
    helper = torch.tensor([1.0, 0.0, 0.0]) if abs(float(normal[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    e1 = torch.nn.functional.normalize(torch.linalg.cross(normal, helper), dim=0)
    e2 = torch.linalg.cross(normal, e1)
    return torch.stack([e1, e2, normal])


def _sample_objects(g: torch.Generator, cfg: SyntheticConfig, palette: torch.Tensor) -> list[Primitive]:
    """Primitives resting on (or floating above) the ground, non-overlapping in the xy plane."""
    n = int(torch.randint(cfg.num_objects[0], cfg.num_objects[1] + 1, (1,), generator=g))
    radius = _u(g, *cfg.scene_radius)
    placed: list[tuple[float, float, float]] = []  # (x, y, bounding radius)
    objects: list[Primitive] = []
    for i in range(n):
        kind = cfg.object_kinds[int(torch.randint(0, len(cfg.object_kinds), (1,), generator=g))]
        s = _u(g, *cfg.object_size)
        if kind == "sphere":
            size = torch.tensor([s, s, s])
            rot = _random_rotation(g)
            rest, bound = s, s
        elif kind == "box":
            half = torch.tensor([s * _u(g, 0.6, 1.4) for _ in range(3)])
            size = half
            rot = _rot_z(_u(g, 0.0, 2 * math.pi))
            rest, bound = float(half[2]), float(half[:2].norm())
        else:
            r, h = s * _u(g, 0.45, 1.0), s * _u(g, 0.6, 1.6)
            size = torch.tensor([r, r, h])
            if float(torch.rand(1, generator=g)) < 0.3:  # lying on its side
                rot = _rot_z(_u(g, 0.0, 2 * math.pi)) @ _rot_x(math.pi / 2)
                rest, bound = r, math.hypot(r, h)
            else:
                rot = _rot_z(_u(g, 0.0, 2 * math.pi))
                rest, bound = h, r
        floating = float(torch.rand(1, generator=g)) < cfg.float_prob
        lift = _u(g, 0.1, 0.6) if floating else 0.0
        texture = sample_texture(g, cfg.textures, cfg.texture_frequency,
                                 palette if float(torch.rand(1, generator=g)) < 0.5 else None)
        spot = None
        for _ in range(40):
            rr = radius * math.sqrt(float(torch.rand(1, generator=g)))
            a = _u(g, 0.0, 2 * math.pi)
            x, y = rr * math.cos(a), rr * math.sin(a)
            if all(math.hypot(x - px, y - py) > bound + pb + 0.02 for px, py, pb in placed):
                spot = (x, y)
                break
        if spot is None:
            if objects:
                continue
            spot = (0.0, 0.0)
        placed.append((spot[0], spot[1], bound))
        center = torch.tensor([spot[0], spot[1], rest + lift])
        objects.append(Primitive(kind, center, rot.float(), size.float(), texture))
    return objects


def _sample_sky(g: torch.Generator, radius: float) -> Sky:
    """A day / sunset / overcast / arbitrary-hue sky with clouds."""
    style = int(torch.randint(0, 4, (1,), generator=g))
    if style == 0:  # blue day
        h = _u(g, 0.54, 0.64)
        zenith = hsv_to_rgb(torch.tensor([h, _u(g, 0.45, 0.85), _u(g, 0.65, 0.95)]))
        horizon = hsv_to_rgb(torch.tensor([h, _u(g, 0.05, 0.3), _u(g, 0.85, 1.0)]))
    elif style == 1:  # sunset
        zenith = hsv_to_rgb(torch.tensor([_u(g, 0.6, 0.8), _u(g, 0.4, 0.8), _u(g, 0.3, 0.6)]))
        horizon = hsv_to_rgb(torch.tensor([_u(g, 0.0, 0.12), _u(g, 0.5, 0.9), _u(g, 0.8, 1.0)]))
    elif style == 2:  # overcast
        v = _u(g, 0.5, 0.85)
        zenith = torch.full((3,), v) + torch.randn(3, generator=g) * 0.02
        horizon = torch.full((3,), min(1.0, v + 0.1)) + torch.randn(3, generator=g) * 0.02
    else:
        pal = sample_palette(g, 2)
        zenith, horizon = pal[0], pal[1]
    table = torch.rand((16, 16, 16), generator=g)
    return Sky(torch.zeros(3), radius, horizon.clamp(0, 1).float(), zenith.clamp(0, 1).float(),
               torch.full((3,), _u(g, 0.85, 1.0)), _u(g, 0.0, 0.6), _u(g, 2.0, 6.0), table)


def _sample_light(g: torch.Generator, cfg: SyntheticConfig, sky: Sky) -> Light:
    """Sun direction and colour, ambient tinted by the sky, jittered shadow directions."""
    el = math.radians(_u(g, *cfg.sun_elevation_deg))
    az = _u(g, 0.0, 2 * math.pi)
    d = torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    sun, amb = _u(g, *cfg.sun_intensity), _u(g, *cfg.ambient)
    scale = 1.05 / max(1.05, sun + amb)  # keep lit albedo 1 surfaces from clipping much
    sun_col = hsv_to_rgb(torch.tensor([_u(g, 0.05, 0.15), _u(g, 0.0, 0.3), 1.0])) * sun * scale
    amb_col = torch.lerp(torch.ones(3), sky.zenith, 0.4) * amb * scale
    S = cfg.shadow_samples
    if S == 1:
        dirs = d.unsqueeze(0)
    else:
        basis = _plane_basis(d)
        r = math.tan(math.radians(cfg.light_radius_deg)) * torch.rand(S, generator=g).sqrt()
        a = torch.rand(S, generator=g) * 2 * math.pi
        dirs = d + (r * a.cos()).unsqueeze(-1) * basis[0] + (r * a.sin()).unsqueeze(-1) * basis[1]
        dirs = torch.nn.functional.normalize(dirs, dim=-1)
    return Light(d.float(), sun_col.float(), amb_col.float(), dirs.float())


def _orbit_cameras(g: torch.Generator, cfg: SyntheticConfig, center: torch.Tensor, scale: float):
    """Orbit eyes [V, 3] and look-at targets [V, 3] around `center` [3] (distances x `scale`)."""
    V = cfg.num_views
    arc = math.radians(_u(g, *cfg.orbit_arc_deg))
    az0 = _u(g, 0.0, 2 * math.pi)
    full = arc >= 2 * math.pi - 1e-3
    step = arc / V if full else arc / max(V - 1, 1)
    az = az0 + step * (torch.arange(V, dtype=torch.float32) + (torch.rand(V, generator=g) - 0.5) * 0.4)
    lo, hi = cfg.elevation_deg
    el_base = _u(g, lo, hi)
    el = (el_base + (torch.rand(V, generator=g) - 0.5) * 0.5 * (hi - lo)).clamp(lo, hi)
    el = torch.deg2rad(el)
    dist = scale * _u(g, *cfg.camera_distance) * (1.0 + (torch.rand(V, generator=g) - 0.5) * 0.15)
    eyes = center + dist.unsqueeze(-1) * torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], -1)
    targets = center + (torch.rand(V, 3, generator=g) - 0.5) * 2.0 * cfg.target_jitter
    return eyes, targets


def _forward_cameras(g: torch.Generator, cfg: SyntheticConfig, center: torch.Tensor, scale: float):
    """Forward-facing (LLFF-like) eyes [V, 3] on a small disc, all looking roughly one way."""
    V = cfg.num_views
    el = math.radians(_u(g, *cfg.elevation_deg))
    az = _u(g, 0.0, 2 * math.pi)
    dist = scale * _u(g, *cfg.camera_distance)
    back = torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    rig = center + dist * back
    fwd = -back
    right = torch.nn.functional.normalize(torch.linalg.cross(fwd, UP), dim=0)
    up = torch.linalg.cross(right, fwd)
    spread = _u(g, *cfg.forward_spread) * dist
    r = spread * torch.rand(V, generator=g).sqrt()
    a = torch.rand(V, generator=g) * 2 * math.pi
    eyes = rig + (r * a.cos()).unsqueeze(-1) * right + (0.6 * r * a.sin()).unsqueeze(-1) * up
    eyes = eyes + (torch.rand(V, 1, generator=g) - 0.5) * 0.1 * dist * fwd
    eyes[:, 2] = eyes[:, 2].clamp(min=0.1)
    focus = _u(g, 1.0, 3.0) * dist  # how far ahead the (near-parallel) optical axes converge
    targets = rig + focus * fwd + (torch.rand(V, 3, generator=g) - 0.5) * 0.04 * dist
    return eyes, targets


def _background_planes(g: torch.Generator, cfg: SyntheticConfig, kind: str, center: torch.Tensor,
                       eyes: torch.Tensor, palette: torch.Tensor) -> list[Plane]:
    """Ground plane plus the enclosure of `kind` (walls: open-top room, backdrop: one wall)."""
    plane_freq = (cfg.texture_frequency[0] / 3.0, cfg.texture_frequency[1] / 3.0)
    ground_tex = sample_texture(g, cfg.textures, plane_freq, palette if float(torch.rand(1, generator=g)) < 0.5 else None)
    up = UP.clone()
    reach = float((eyes[:, :2] - center[:2]).norm(dim=-1).max())
    fade = reach * _u(g, 1.5, 3.0)
    planes = [Plane(torch.zeros(3), up, _plane_basis(up), ground_tex, fade_center=center.clone(), fade_radius=fade)]
    if kind == "sky":
        return planes
    dist = reach * _u(g, 1.25, 1.8) + 0.3
    height = float("inf") if float(torch.rand(1, generator=g)) < 0.4 else _u(g, 1.0, 3.0)
    wall_tex = sample_texture(g, cfg.textures, plane_freq, palette if float(torch.rand(1, generator=g)) < 0.5 else None)
    if kind == "walls":
        yaw = _u(g, 0.0, 2 * math.pi)
        angles = [yaw + k * math.pi / 2 for k in range(4)]
    else:  # backdrop: behind the scene, facing the mean camera
        view = center[:2] - eyes[:, :2].mean(0)
        angles = [math.atan2(float(view[1]), float(view[0])) + _u(g, -0.3, 0.3)]
    for ang in angles:
        out = torch.tensor([math.cos(ang), math.sin(ang), 0.0])
        normal = -out  # facing the scene centre
        point = torch.tensor([float(center[0]), float(center[1]), 0.0]) + dist * out
        planes.append(Plane(point, normal, _plane_basis(normal), wall_tex, height, center.clone(), 2.0 * fade))
    return planes


def content_radius(objects: list[Primitive]) -> float:
    """Radius of the vertical cylinder around the z axis that holds every primitive (at least 0.5)."""
    r = [float(o.center[:2].norm()) + o.bound_radius for o in objects]
    return max(r + [0.5])


def sample_layout(seed: int, cfg: SyntheticConfig) -> SceneLayout:
    """The random layout of scene `seed` under `cfg` (deterministic; see module docstring)."""
    g = torch.Generator().manual_seed(int(seed))
    palette = sample_palette(g, 5)
    objects = _sample_objects(g, cfg, palette)
    if objects:
        zc = float(torch.stack([o.center[2] for o in objects]).mean())
    else:
        zc = 0.3
    center = torch.tensor([0.0, 0.0, zc])
    if cfg.rig == "mixed":
        rig = "forward" if float(torch.rand(1, generator=g)) < cfg.forward_prob else "orbit"
    else:
        rig = cfg.rig
    scale = content_radius(objects)
    eyes, targets = (_orbit_cameras if rig == "orbit" else _forward_cameras)(g, cfg, center, scale)
    viewmats = look_at(eyes, targets, UP)  # [V, 4, 4]
    fov = math.radians(_u(g, *cfg.fov_deg))
    fx = 0.5 * cfg.width / math.tan(0.5 * fov)
    K = torch.tensor([[fx, 0.0, cfg.width / 2.0], [0.0, fx, cfg.height / 2.0], [0.0, 0.0, 1.0]])
    Ks = K.expand(cfg.num_views, 3, 3).clone()
    if cfg.background == "random":
        background = BACKGROUND_KINDS[int(torch.randint(0, len(BACKGROUND_KINDS), (1,), generator=g))]
    else:
        background = cfg.background
    planes = _background_planes(g, cfg, background, center, eyes, palette)
    reach = float((eyes - center).norm(dim=-1).max())
    sky = _sample_sky(g, radius=max(4.0 * reach, 8.0))
    light = _sample_light(g, cfg, sky)
    info = {"eyes": eyes.float(), "targets": targets.float(), "fov_x_deg": math.degrees(fov),
            "content_radius": scale}
    return SceneLayout(int(seed), rig, background, center.float(), objects, planes, sky, light,
                       viewmats.float(), Ks.float(), cfg.width, cfg.height, info)
