"""Memory estimates checked BEFORE allocating: a request that would not fit is refused clearly.

    check_memory(refine_bytes(views=16, width=4000, height=3000, gaussians=10_000), "refine at 4000x3000")

The limit is `--max-memory-gb GB` (a global CLI option, or FORESPLAT_MAX_MEMORY_GB), by default
half the physical memory. The estimates are rough figures calibrated on the CPU path: the peak RSS of
`/usr/bin/time -f %M foresplat refine synthetic:1 --width W --steps 2 ...` (16 views) grew by
~100 bytes per view-pixel between W = 128, 512 and 1024, which refine_bytes gives as 64 per
view-pixel (scene) + 512 per rendered pixel (/16 views = 32); they catch requests that are off by
orders of magnitude (a 100000-px width, a 4000-px refinement of a 32-px scene), not a few percent.
"""

from __future__ import annotations

import math
import os

from foresplat.errors import MemoryLimitError

__all__ = ["memory_limit_bytes", "check_memory", "scene_bytes", "refine_bytes", "render_bytes",
           "gaussians_bytes", "unrolled_bytes", "fmt_gb"]

ENV = "FORESPLAT_MAX_MEMORY_GB"
DEFAULT_FRACTION = 0.5
BYTES_PER_VIEW_PIXEL = 64
"""Scene image + resized copy + refiner cache + SSIM statistics, float32, per view and pixel."""
BYTES_PER_RENDER_PIXEL = 512
"""One rendered view with its autograd intermediates (colour, alpha, depth, loss maps), per pixel."""
BYTES_PER_GAUSSIAN = 4096
"""Parameters, gradients, two Adam moments, projected 2D footprints, copies (SH degree 3)."""
BYTES_PER_KEPT_GAUSSIAN_PIXEL = 300
"""The `unrolled` rule keeps every float64 reference render of its K-step graph (K refiner renders +
one per anchor view), each with dense [pixels, N] intermediates. Peak RSS of one call (4 + 2 views,
lam 0.5, stride 2; N = 500-1000, 24-32 px; K = 4 / 8: 7 / 13 such renders) grew by 285-305 bytes per
Gaussian x pixel x render (the float32 zero-step renders are inside that margin). It counts every
Gaussian as visible, so it is an upper bound: benchmarks/metagrad.py's unrolled case (24 px, 150
Gaussians, K = 8, stride 1, all 4 target views per anchor: 44 renders) measured 708 MiB where this gives
1.1 GB."""


def physical_memory_bytes() -> int:
    """Physical memory of the machine (8 GiB when it cannot be read)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def memory_limit_bytes() -> int:
    """The limit: FORESPLAT_MAX_MEMORY_GB (set by --max-memory-gb) or half the physical memory."""
    value = os.environ.get(ENV, "").strip()
    if value:
        return int(parse_gb(value, ENV) * (1 << 30))
    return int(DEFAULT_FRACTION * physical_memory_bytes())


def parse_gb(value: str, name: str, error: type[ValueError] = MemoryLimitError) -> float:
    """`value` as a finite, positive number of GB; raises `error` naming `name` otherwise
    (--max-memory-gb in foresplat.cli, FORESPLAT_MAX_MEMORY_GB here)."""
    try:
        gb = float(value)
    except ValueError:
        raise error(f"{name}: expected a number of GB, got {value!r}") from None
    if not (math.isfinite(gb) and gb > 0):
        raise error(f"{name}: expected a positive number of GB, got {value!r}")
    return gb


def fmt_gb(nbytes: float) -> str:
    """Bytes as GB with 3 significant digits."""
    return f"{nbytes / (1 << 30):.3g} GB"


def check_memory(nbytes: float, what: str) -> None:
    """Raises MemoryLimitError when the estimate `nbytes` of `what` exceeds memory_limit_bytes()."""
    limit = memory_limit_bytes()
    if not math.isfinite(nbytes) or nbytes > limit:
        source = f"{ENV}" if os.environ.get(ENV, "").strip() else "half the physical memory"
        need = "an unbounded amount" if not math.isfinite(nbytes) else f"about {fmt_gb(nbytes)}"
        raise MemoryLimitError(f"{what} needs {need} of memory (estimate), above the limit of "
                               f"{fmt_gb(limit)} ({source}); reduce the sizes, or raise the limit with "
                               f"--max-memory-gb {max(1, math.ceil(1.25 * nbytes / (1 << 30))) if math.isfinite(nbytes) else 'GB'}")


def scene_bytes(views: int, width: int, height: int) -> float:
    """A scene of `views` images of width x height held for refinement (images, caches)."""
    return float(views) * float(width) * float(height) * BYTES_PER_VIEW_PIXEL


def render_bytes(width: int, height: int, views_at_once: int = 1) -> float:
    """Rendering views_at_once views of width x height (with gradients)."""
    return float(views_at_once) * float(width) * float(height) * BYTES_PER_RENDER_PIXEL


def gaussians_bytes(num: int) -> float:
    """A set of `num` Gaussians being refined or rendered."""
    return float(num) * BYTES_PER_GAUSSIAN


def unrolled_bytes(renders: int, gaussians: int, pixels: int) -> float:
    """One `unrolled` rule call keeping `renders` renders of `pixels` pixels of `gaussians` Gaussians."""
    return float(renders) * float(gaussians) * float(pixels) * BYTES_PER_KEPT_GAUSSIAN_PIXEL


def refine_bytes(views: int, width: int, height: int, gaussians: int, views_per_step: int = 1) -> float:
    """Refining `gaussians` Gaussians on `views` views of width x height."""
    return scene_bytes(views, width, height) + render_bytes(width, height, views_per_step) + gaussians_bytes(gaussians)


def resized_size(width: int, height: int, new_width: int | None, new_height: int | None) -> tuple[int, int]:
    """(width, height) after `--width/--height` (a missing one follows the aspect ratio, as
    foresplat.data.spec.resize_to); raises UserError naming the option for a value < 1."""
    from foresplat.errors import UserError

    for name, v in (("--width", new_width), ("--height", new_height)):
        if v is not None and v < 1:
            raise UserError(f"{name}: expected a positive number of pixels, got {v}")
    if new_width is None and new_height is None:
        return width, height
    w = new_width if new_width is not None else max(1, round(width * new_height / height))
    h = new_height if new_height is not None else max(1, round(height * new_width / width))
    return int(w), int(h)


BYTES_PER_PREDICT_PIXEL = 1024
"""Predictor activations per context-view pixel (backbone features, cost volume, head, output
Gaussians), no grad: measured ~370 B for edge-t (peak RSS of `foresplat predict` at 64 and 256 px)."""


def predict_bytes(model, scene_views: int, context_views: int, width: int, height: int) -> float:
    """A predictor forward pass on context_views views of width x height (plus the scene's images)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return (float(params) + scene_bytes(scene_views, width, height)
            + float(context_views) * float(width) * float(height) * BYTES_PER_PREDICT_PIXEL)


BYTES_PER_TRAIN_PIXEL = 4096
"""Training, per view-pixel of a batch: predictor activations kept for the backward pass (~4x a
no-grad forward, BYTES_PER_PREDICT_PIXEL) plus the rule's renders and refinement graph."""


def train_bytes(batch_size: int, views: int, width: int, height: int) -> float:
    """One training iteration on batch_size scenes of `views` views of width x height."""
    return float(batch_size) * float(views) * float(width) * float(height) * BYTES_PER_TRAIN_PIXEL
