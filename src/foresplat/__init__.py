"""foresplat: predict-then-refine 3D Gaussian Splatting with MetaGrad (ForeSplat)."""

from foresplat.cameras import Cameras
from foresplat.gaussians import Gaussians

__version__ = "0.1.0"
__all__ = ["Cameras", "Gaussians", "__version__"]
