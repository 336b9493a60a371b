"""Compositing constants shared by every backend (3DGS values)."""

ALPHA_MAX = 0.99  # per-Gaussian alpha is clamped to this
ALPHA_MIN = 1.0 / 255.0  # alphas below this are skipped
T_MIN = 1e-4  # a Gaussian that would take the transmittance below this is not added; the pixel stops
TILE_SIZE = 16  # tile edge in pixels for the tiled (cpu) rasterizer
