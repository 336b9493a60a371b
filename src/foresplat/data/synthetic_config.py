"""`SyntheticConfig`: the knobs of the procedural synthetic scene generator (world units, z up).

The scene is laid out around the origin: primitives rest on (or float above) the ground plane
z = 0 inside a disc of radius `scene_radius`; cameras look at the scene centre from
`camera_distance` x the content radius (of the smallest vertical cylinder about the z axis that
holds every primitive), so the objects fill a similar part of the frame in every scene. A sky
dome encloses everything, so every camera ray hits a surface.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from foresplat.data.synthetic_textures import TEXTURE_KINDS

PRIMITIVE_KINDS = ("sphere", "box", "cylinder")
BACKGROUND_KINDS = ("sky", "walls", "backdrop")


@dataclass
class SyntheticConfig:
    """Procedural scene generator settings; ranges are (low, high), sampled per scene or object."""

    width: int = 64
    """Image width in pixels."""
    height: int = 64
    """Image height in pixels."""
    num_views: int = 16
    """Views (cameras) per scene."""
    rig: Literal["orbit", "forward", "mixed"] = "mixed"
    """Camera rig: object-centric orbit, forward-facing (LLFF-like), or either per scene."""
    forward_prob: float = 0.35
    """With rig="mixed": probability that a scene uses the forward-facing rig."""
    num_objects: tuple[int, int] = (2, 6)
    """Inclusive range of the number of primitives per scene."""
    object_kinds: tuple[str, ...] = PRIMITIVE_KINDS
    """Primitive kinds to draw from (sphere, box, cylinder)."""
    object_size: tuple[float, float] = (0.18, 0.5)
    """Range of a primitive's characteristic half size (world units)."""
    float_prob: float = 0.15
    """Probability that a primitive floats above the ground instead of resting on it."""
    scene_radius: tuple[float, float] = (0.4, 1.0)
    """Radius of the disc in which primitive centres are placed."""
    fov_deg: tuple[float, float] = (40.0, 65.0)
    """Horizontal field of view range in degrees (square pixels)."""
    camera_distance: tuple[float, float] = (1.7, 3.0)
    """Distance of the cameras from the scene centre, in units of the scene's content radius."""
    elevation_deg: tuple[float, float] = (8.0, 45.0)
    """Camera elevation above the horizontal plane through the scene centre, degrees."""
    orbit_arc_deg: tuple[float, float] = (90.0, 360.0)
    """Orbit rig: the azimuth span covered by the views, degrees."""
    forward_spread: tuple[float, float] = (0.08, 0.25)
    """Forward rig: radius of the camera positions around the rig centre, as a fraction of the distance."""
    target_jitter: float = 0.05
    """Orbit rig: per-view random offset of the look-at point (world units)."""
    background: Literal["sky", "walls", "backdrop", "random"] = "random"
    """Enclosure besides ground + sky dome: nothing, an open-top room, one back wall; or random."""
    textures: tuple[str, ...] = TEXTURE_KINDS
    """Texture kinds to draw from (solid, checker, stripes, rings, noise, gradient, marble)."""
    texture_frequency: tuple[float, float] = (1.5, 7.0)
    """Texture frequency range on objects, cycles per world unit (planes use 1/3 of it)."""
    ambient: tuple[float, float] = (0.3, 0.55)
    """Ambient light strength range."""
    sun_intensity: tuple[float, float] = (0.6, 1.0)
    """Directional light strength range."""
    sun_elevation_deg: tuple[float, float] = (25.0, 70.0)
    """Directional light elevation range, degrees."""
    shadows: bool = True
    """Cast shadow rays toward the light (primitives occlude; walls and ground do not)."""
    shadow_samples: int = 1
    """Shadow rays per hit, jittered over the light's disc: 1 = hard shadows, more = soft (slower)."""
    light_radius_deg: float = 3.0
    """Angular radius of the light's disc, degrees (soft-shadow penumbra)."""
    supersample: int = 2
    """Anti-aliasing: s x s colour samples in pixels at edges (1 = off); depth and masks come from pixel centres."""
    antialias_threshold: float = 0.1
    """A pixel is supersampled when a neighbour's surface differs or a colour channel differs by more."""
    points_per_view: int = 256
    """Sparse points per view, back-projected from random depth pixels (with their colours)."""
    chunk_rays: int = 1 << 18
    """Rays traced per chunk (bounds memory at high resolution)."""

    def validate(self) -> "SyntheticConfig":
        """Raises ValueError naming the field when a setting is out of range."""
        def bad(name: str, want: str) -> None:
            raise ValueError(f"SyntheticConfig.{name}: expected {want}, got {getattr(self, name)!r}")

        for name in ("width", "height", "num_views", "shadow_samples", "supersample", "chunk_rays"):
            if int(getattr(self, name)) < 1:
                bad(name, "a positive integer")
        if self.points_per_view < 0:
            bad("points_per_view", "a non-negative integer")
        if self.rig not in ("orbit", "forward", "mixed"):
            bad("rig", "'orbit', 'forward' or 'mixed'")
        if self.background not in BACKGROUND_KINDS + ("random",):
            bad("background", f"one of {BACKGROUND_KINDS + ('random',)}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("object_kinds", "textures"):
                continue
            if isinstance(v, tuple):
                if len(v) != 2 or not v[0] <= v[1]:
                    bad(f.name, "a (low, high) pair with low <= high")
        if self.num_objects[0] < 0:
            bad("num_objects", "a non-negative range")
        for name in ("object_size", "scene_radius", "camera_distance", "texture_frequency"):
            if getattr(self, name)[0] <= 0:
                bad(name, "a positive range")
        if not (0.0 < self.fov_deg[0] and self.fov_deg[1] < 170.0):
            bad("fov_deg", "a range inside (0, 170) degrees")
        if not (0.0 <= self.elevation_deg[0] and self.elevation_deg[1] <= 80.0):
            bad("elevation_deg", "a range inside [0, 80] degrees (cameras stay above the ground)")
        if not (0.0 < self.sun_elevation_deg[0] and self.sun_elevation_deg[1] <= 90.0):
            bad("sun_elevation_deg", "a range inside (0, 90] degrees")
        if not self.object_kinds or any(k not in PRIMITIVE_KINDS for k in self.object_kinds):
            bad("object_kinds", f"a non-empty subset of {PRIMITIVE_KINDS}")
        if not self.textures or any(k not in TEXTURE_KINDS for k in self.textures):
            bad("textures", f"a non-empty subset of {TEXTURE_KINDS}")
        if not 0.0 <= self.forward_prob <= 1.0:
            bad("forward_prob", "a probability in [0, 1]")
        if not 0.0 <= self.float_prob <= 1.0:
            bad("float_prob", "a probability in [0, 1]")
        return self
