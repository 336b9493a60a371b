"""Procedural solid textures and colour palettes for the synthetic scene generator.

Every texture is a function of a 3D point in the surface's own frame (object-local coordinates for
primitives, in-plane coordinates for planes), never of the viewing ray, so a surface point has the
same albedo in every view (what multi-view reconstruction assumes).

    Texture.albedo(points [N, 3]) -> [N, 3] float32 in [0, 1]

Kinds: solid, checker, stripes, rings, noise (value-noise fBm through a 3-colour ramp), gradient,
marble (stripes warped by noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TEXTURE_KINDS = ("solid", "checker", "stripes", "rings", "noise", "gradient", "marble")
NOISE_TABLE_SIZE = 16  # value-noise lattice period (cells per axis)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV [..., 3] (all in [0, 1], hue wraps) -> RGB [..., 3] in [0, 1]."""
    h, s, v = hsv.unbind(-1)
    k = torch.stack([(5.0 + h * 6.0) % 6.0, (3.0 + h * 6.0) % 6.0, (1.0 + h * 6.0) % 6.0], -1)
    k = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)  # [..., 3]
    return v.unsqueeze(-1) - (v * s).unsqueeze(-1) * k


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> torch.Tensor:
    """Uniform float32 samples in [lo, hi) of the given shape (a 0-dim tensor when no shape)."""
    return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float32)


def sample_palette(g: torch.Generator, n: int = 3, base_hue: float | None = None) -> torch.Tensor:
    """n colours [n, 3] in [0, 1]: a random base colour and contrasting partners.

    Harmony rules are drawn at random: analogous hues, complementary hues, or one hue with
    different values (light/dark). `base_hue` pins the first hue (e.g. a scene-wide theme).
    """
    hue = float(_uniform(g, 0.0, 1.0)) if base_hue is None else float(base_hue)
    rule = int(torch.randint(0, 3, (1,), generator=g))
    if rule == 0:  # analogous
        hues = [hue + float(_uniform(g, -0.12, 0.12)) * i for i in range(n)]
    elif rule == 1:  # complementary / triadic
        step = float(_uniform(g, 0.3, 0.5))
        hues = [hue + step * i for i in range(n)]
    else:  # monochrome, varied value
        hues = [hue + float(_uniform(g, -0.03, 0.03)) for _ in range(n)]
    sat = _uniform(g, 0.25, 0.95, n)
    val = _uniform(g, 0.35, 1.0, n)
    if rule == 2:  # make sure light and dark both appear
        val = torch.linspace(0.35, 1.0, n)[torch.randperm(n, generator=g)]
    hsv = torch.stack([torch.tensor(hues, dtype=torch.float32) % 1.0, sat, val], -1)
    return hsv_to_rgb(hsv)


def value_noise(points: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Smooth periodic value noise [N] in [0, 1] at points [N, 3] (lattice cells of size 1).

    `table` [T, T, T] holds the lattice values; interpolation is trilinear with a smoothstep fade.
    """
    T = table.shape[0]
    flat = table.reshape(-1)
    cell = torch.floor(points)
    f = points - cell  # [N, 3] in [0, 1)
    f = f * f * (3.0 - 2.0 * f)
    i = cell.long() % T  # [N, 3]
    j = (i + 1) % T
    ix = (i[:, 0] * T * T, j[:, 0] * T * T)  # flat-index strides of the lattice corners
    iy = (i[:, 1] * T, j[:, 1] * T)
    iz = (i[:, 2], j[:, 2])  # z is interpolated with lerp below
    wx = (1.0 - f[:, 0], f[:, 0])
    wy = (1.0 - f[:, 1], f[:, 1])
    out = torch.zeros(points.shape[0], dtype=points.dtype, device=points.device)
    for dx in (0, 1):
        for dy in (0, 1):
            base = ix[dx] + iy[dy]
            wxy = wx[dx] * wy[dy]
            lerp_z = torch.lerp(flat[base + iz[0]], flat[base + iz[1]], f[:, 2])
            out = out + wxy * lerp_z
    return out


def fbm(points: torch.Tensor, table: torch.Tensor, octaves: int) -> torch.Tensor:
    """Fractal sum of `octaves` value-noise octaves at points [N, 3], normalised to [0, 1] -> [N]."""
    total = torch.zeros(points.shape[0], dtype=points.dtype, device=points.device)
    amp, norm = 1.0, 0.0
    p = points
    for k in range(octaves):
        total = total + amp * value_noise(p + 5.3 * k, table)
        norm += amp
        amp *= 0.5
        p = p * 2.03
    return total / norm


def _ramp(colors: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear colour ramp through colors [3, 3] at t [N] in [0, 1] -> [N, 3]."""
    t = t.clamp(0.0, 1.0).unsqueeze(-1)
    lo = torch.lerp(colors[0], colors[1], (2.0 * t).clamp(max=1.0))
    return torch.lerp(lo, colors[2].expand_as(lo), (2.0 * t - 1.0).clamp(min=0.0))


@dataclass
class Texture:
    """A procedural solid texture (see module docstring for the kinds).

    colors [3, 3] (rows = colours), frequency in cycles per world unit, direction [3] unit vector
    (stripes/gradient axis, rings axis), phase in cycles, offset [3] added to the points first,
    sharp (hard-edged stripes/rings/checker vs soft), noise_table [T, T, T] for noise/marble.
    """

    kind: str
    colors: torch.Tensor
    frequency: float
    direction: torch.Tensor
    phase: float
    offset: torch.Tensor
    sharp: bool
    noise_table: torch.Tensor
    octaves: int = 3

    def mean_color(self) -> torch.Tensor:
        """Approximate spatial mean of the albedo [3] (what the texture blurs to from far away)."""
        if self.kind == "solid":
            return self.colors[0]
        if self.kind in ("noise", "gradient"):
            return 0.25 * self.colors[0] + 0.5 * self.colors[1] + 0.25 * self.colors[2]
        return 0.5 * (self.colors[0] + self.colors[1])

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        """Albedo [N, 3] in [0, 1] at points [N, 3] of the surface's texture frame."""
        c = self.colors.to(points)
        if points.shape[0] == 0:
            return points.new_zeros(0, 3)
        p = (points + self.offset.to(points)) * self.frequency  # [N, 3], one cycle per unit
        d = self.direction.to(points)
        if self.kind == "solid":
            return c[0].expand(points.shape[0], 3).clone()
        if self.kind == "checker":
            m = (torch.floor(p).sum(-1) % 2.0)
            return torch.lerp(c[0], c[1], m.unsqueeze(-1))
        if self.kind in ("stripes", "rings", "marble"):
            if self.kind == "stripes":
                s = p @ d
            elif self.kind == "rings":
                s = (p - (p @ d).unsqueeze(-1) * d).norm(dim=-1)
            else:
                s = p @ d + 1.5 * fbm(p * 0.7, self.noise_table.to(points), self.octaves)
            s = s + self.phase
            if self.sharp and self.kind != "marble":
                m = ((s - torch.floor(s)) < 0.5).to(points.dtype)
            else:
                m = 0.5 + 0.5 * torch.sin(2.0 * math.pi * s)
            return torch.lerp(c[0], c[1], m.unsqueeze(-1))
        if self.kind == "noise":
            n = fbm(p, self.noise_table.to(points), self.octaves)
            n = ((n - 0.5) * 2.2 + 0.5)  # stretch the contrast (fBm concentrates around 0.5)
            return _ramp(c, n)
        if self.kind == "gradient":
            t = 0.5 + 0.5 * torch.sin(2.0 * math.pi * (0.25 * (p @ d) + self.phase))
            return _ramp(c, t)
        raise ValueError(f"Texture.kind: unknown texture {self.kind!r}; expected one of {TEXTURE_KINDS}")


def sample_texture(
    g: torch.Generator,
    kinds: tuple[str, ...] = TEXTURE_KINDS,
    frequency: tuple[float, float] = (1.5, 6.0),
    palette: torch.Tensor | None = None,
) -> Texture:
    """A random texture: kind from `kinds`, frequency (cycles/unit) log-uniform in `frequency`.

    `palette` [n >= 3, 3] restricts colours to a scene theme (three rows are picked from it);
    otherwise a fresh palette is drawn.
    """
    for k in kinds:
        if k not in TEXTURE_KINDS:
            raise ValueError(f"SyntheticConfig.textures: unknown texture {k!r}; expected some of {TEXTURE_KINDS}")
    kind = kinds[int(torch.randint(0, len(kinds), (1,), generator=g))]
    if palette is None:
        colors = sample_palette(g, 3)
    else:
        colors = palette[torch.randperm(palette.shape[0], generator=g)[:3]]
    lo, hi = math.log(frequency[0]), math.log(frequency[1])
    freq = math.exp(float(_uniform(g, lo, hi)))
    direction = torch.nn.functional.normalize(torch.randn(3, generator=g), dim=0)
    phase = float(_uniform(g, 0.0, 1.0))
    offset = _uniform(g, 0.0, 1.0, 3) / freq
    sharp = bool(torch.rand(1, generator=g) < 0.6)
    table = torch.rand((NOISE_TABLE_SIZE,) * 3, generator=g, dtype=torch.float32)
    octaves = int(torch.randint(2, 5, (1,), generator=g))
    return Texture(kind, colors.float(), freq, direction.float(), phase, offset.float(), sharp, table, octaves)
