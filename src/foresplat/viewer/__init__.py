"""Browser viewer (viser): `foresplat view` and `foresplat refine --view`. viser is imported lazily."""

from foresplat.viewer.splats import SplatArrays, ViserPose, pinhole_for_fov, splat_arrays, viser_poses
from foresplat.viewer.server import Frame, Viewer, ViewerUnavailableError, require_viser

__all__ = ["Frame", "SplatArrays", "Viewer", "ViewerUnavailableError", "ViserPose", "pinhole_for_fov",
           "require_viser", "splat_arrays", "viser_poses"]
