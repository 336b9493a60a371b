"""Differentiable Gaussian rasterization: `rasterization(...)` (gsplat-style) and `render(g, cameras)`.

Backends: "reference" (dense PyTorch, twice differentiable), "cpu" (native tiled C++/OpenMP kernel,
compiled on first use), "gsplat" (CUDA), "auto". See foresplat.render.api.
"""

from foresplat.render.api import RenderOutput, available_backends, rasterization, render
from foresplat.render.projection import Projection, project_gaussians
from foresplat.render.sh import eval_sh_bases, sh_to_colors, spherical_harmonics

__all__ = [
    "RenderOutput", "available_backends", "rasterization", "render", "Projection",
    "project_gaussians", "eval_sh_bases", "sh_to_colors", "spherical_harmonics",
]
