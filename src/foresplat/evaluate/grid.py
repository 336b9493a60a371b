"""Image grid of target views: ground truth, then each method at step 0 and after the last step (PNG).

Rows are target views, columns are [ground truth | method A step 0 | method A final | method B ...],
with a label strip on top. Small renders are enlarged (nearest neighbour) so that the grid is legible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from foresplat.io.atomic import atomic_write


def image_grid(columns: list[tuple[str, torch.Tensor]], min_cell: int = 96, pad: int = 2) -> Image.Image:
    """Builds the grid from labelled columns, each [V, H, W, 3] in [0, 1] (same V, H, W for all)."""
    if not columns:
        raise ValueError("image_grid: no columns")
    shape = tuple(columns[0][1].shape)
    for label, imgs in columns:
        if imgs.dim() != 4 or imgs.shape[-1] != 3 or tuple(imgs.shape) != shape:
            raise ValueError(f"image_grid: column {label!r} has shape {list(imgs.shape)}, expected {list(shape)}")
    v, h, w, _ = shape
    zoom = max(1, -(-min_cell // max(1, min(h, w))))
    ch, cw = h * zoom, w * zoom
    label_h = 14
    grid = Image.new("RGB", (len(columns) * (cw + pad) + pad, label_h + v * (ch + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for c, (label, imgs) in enumerate(columns):
        x0 = pad + c * (cw + pad)
        draw.text((x0 + 2, 1), label[: max(4, cw // 6)], fill=(0, 0, 0))
        arr = (imgs.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        for r in range(v):
            tile = Image.fromarray(arr[r]).resize((cw, ch), Image.NEAREST)
            grid.paste(tile, (x0, label_h + pad + r * (ch + pad)))
    return grid


def write_grid(path: str | Path, columns: list[tuple[str, torch.Tensor]]) -> Path:
    """Writes `image_grid(columns)` as a PNG atomically; returns the path."""
    img = image_grid(columns)
    with atomic_write(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
