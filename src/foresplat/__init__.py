"""foresplat: predict-then-refine 3D Gaussian Splatting with MetaGrad (ForeSplat)."""

import os

# OpenMP threads that busy-wait between parallel regions make the native renderer several times
# slower on a loaded machine; sleep instead (only effective if set before torch loads OpenMP).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from foresplat.cameras import Cameras
from foresplat.gaussians import Gaussians

__version__ = "0.1.0"
__all__ = ["Cameras", "Gaussians", "__version__"]
