"""`foresplat data inspect PATH [--out sheet.png]`: what a scene folder holds, as foresplat reads it.

Detects the format, loads the scene (options as in foresplat.data.loaders.LoadOptions) and prints
the number of views, image size, intrinsics (fx fy cx cy), near/far, the 3DGS scene extent, the
sparse points (and the fraction projecting inside the images), masks and depths; with --out it
writes a PNG contact sheet of the views (atomic write).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from foresplat.data.scene import Scene


def contact_sheet(images: torch.Tensor, thumb_width: int = 160, max_images: int = 64,
                  labels: list[str] | None = None) -> Image.Image:
    """A grid of thumbnails of images [V, H, W, 3] in [0, 1] (at most `max_images`, evenly spaced),
    each `thumb_width` pixels wide, labelled with its view index (or `labels`). Returns an RGB image."""
    if images.dim() != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"contact_sheet: expected images [V, H, W, 3] with V >= 1, got {list(images.shape)}")
    if thumb_width < 8 or max_images < 1:
        raise ValueError(f"contact_sheet: need thumb_width >= 8 and max_images >= 1, "
                         f"got {thumb_width}, {max_images}")
    V, H, W = images.shape[:3]
    idx = list(range(V)) if V <= max_images else \
        sorted({round(i * (V - 1) / (max_images - 1)) for i in range(max_images)}) if max_images > 1 else [0]
    tw = int(thumb_width)
    th = max(1, round(H * tw / W))
    cols = max(1, math.ceil(math.sqrt(len(idx))))
    rows = math.ceil(len(idx) / cols)
    pad = 4
    sheet = Image.new("RGB", (cols * (tw + pad) + pad, rows * (th + pad) + pad), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for n, i in enumerate(idx):
        arr = (images[i].detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        thumb = Image.fromarray(arr).resize((tw, th), Image.BOX)
        x, y = pad + (n % cols) * (tw + pad), pad + (n // cols) * (th + pad)
        sheet.paste(thumb, (x, y))
        text = str(i) if labels is None else labels[i]
        draw.rectangle((x, y, x + 7 * len(text) + 4, y + 12), fill=(0, 0, 0))
        draw.text((x + 2, y), text, fill=(255, 255, 255))
    return sheet


def write_contact_sheet(path: str | Path, images: torch.Tensor, **kwargs) -> Path:
    """Writes `contact_sheet(images, **kwargs)` to `path` atomically (format from the suffix)."""
    from foresplat.io.atomic import atomic_write

    sheet = contact_sheet(images, **kwargs)
    with atomic_write(path) as tmp:
        sheet.save(tmp)
    return Path(path)


def describe(scene: Scene, fmt: str, path: Path) -> str:
    """A multi-line summary of a loaded scene (what `foresplat data inspect` prints)."""
    from foresplat.data.loaders.geometry import point_visibility

    K = scene.cameras.Ks.double()
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]

    def rng(t: torch.Tensor) -> str:
        lo, hi = f"{float(t.min()):.2f}", f"{float(t.max()):.2f}"
        return lo if lo == hi else f"{lo}..{hi}"

    lines = [
        f"path          {path}",
        f"format        {fmt}",
        f"name          {scene.name}",
        f"views         {scene.num_views}",
        f"resolution    {scene.width} x {scene.height}",
        f"intrinsics    fx {rng(fx)}  fy {rng(fy)}  cx {rng(cx)}  cy {rng(cy)}",
        f"near / far    {scene.near:.4g} / {scene.far:.4g}",
        f"extent        {scene.extent():.4g}",
    ]
    if scene.points is None:
        lines.append("sparse points 0")
    else:
        vis = point_visibility(scene.cameras.viewmats.double().numpy(), K.numpy(), scene.width, scene.height,
                               scene.points.double().numpy())
        lines.append(f"sparse points {scene.points.shape[0]} (inside the images: {100 * vis.inside.mean():.1f}% "
                     f"on average, in front: {100 * vis.in_front.mean():.1f}%)")
    lines.append(f"masks         {'yes' if scene.masks is not None else 'no'}")
    if scene.depths is None:
        lines.append("depths        no")
    else:
        known = scene.depths > 0
        frac = float(known.float().mean())
        lines.append(f"depths        yes ({100 * frac:.1f}% of pixels known"
                     + (f", {float(scene.depths[known].min()):.4g}..{float(scene.depths[known].max()):.4g})"
                        if frac > 0 else ")"))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    from foresplat.data.loaders import FORMATS

    p = argparse.ArgumentParser(prog="foresplat data", description="Inspect scene folders.")
    sub = p.add_subparsers(dest="verb", required=True)
    ins = sub.add_parser("inspect", help="detect the format, print views, intrinsics, bounds; contact sheet",
                         description="Loads PATH as foresplat does and prints what it holds.")
    ins.add_argument("path", type=Path, help="scene folder (or the format's main file)")
    ins.add_argument("--format", default="auto", choices=("auto",) + FORMATS, help="scene format (default: detect)")
    ins.add_argument("--out", dest="sheet", type=Path, default=None,
                     help="write a PNG contact sheet of the views here")
    ins.add_argument("--thumb", type=int, default=160, help="contact-sheet thumbnail width in pixels")
    ins.add_argument("--sheet-max", type=int, default=64, help="at most this many thumbnails (evenly spaced)")
    ins.add_argument("--downscale", type=int, default=None, help="resolution factor (images_N folders)")
    ins.add_argument("--max-views", type=int, default=None, help="load at most this many views")
    ins.add_argument("--images-dir", default=None, help="images folder relative to PATH")
    ins.add_argument("--split", default="all", help="transforms split: all (default: every split, each frame once), train, val or test")
    ins.add_argument("--sequence", default=None, help="CO3D sequence / TartanAir trajectory / GTA-SfM file")
    ins.add_argument("--normalize", action="store_true", help="IDR/NeuS: unit-sphere (scale_mat) frame")
    return p


def main(argv: list[str]) -> int:
    """Entry point of `foresplat data`; returns the exit status (2 for bad input, with a message)."""
    from foresplat.commands._vocab import modernize

    args = _parser().parse_args(modernize("data", argv))
    from foresplat.data.loaders import detect_format, load_scene
    from foresplat.errors import UserError
    from foresplat.io.outputs import check_output_path

    if not 8 <= args.thumb <= 4096:
        raise UserError(f"--thumb: expected a thumbnail width in 8..4096 pixels, got {args.thumb}")
    if not 1 <= args.sheet_max <= 10_000:
        raise UserError(f"--sheet-max: expected 1..10000 thumbnails, got {args.sheet_max}")
    if args.sheet is not None:
        check_output_path(args.sheet, option="--out", create_parents=True)

    try:
        fmt = detect_format(args.path) if args.format == "auto" else args.format
        scene = load_scene(args.path, fmt, downscale=args.downscale, max_views=args.max_views,
                           images_dir=args.images_dir, split=args.split, sequence=args.sequence,
                           normalize=args.normalize, progress=sys.stderr.isatty())
    except (FileNotFoundError, ValueError, ImportError) as e:
        from foresplat.errors import one_line

        print(f"foresplat data inspect: error: {one_line(e)}", file=sys.stderr)
        return 2
    print(describe(scene, fmt, args.path))
    if args.sheet is not None:
        try:
            out = write_contact_sheet(args.sheet, scene.images, thumb_width=args.thumb,
                                      max_images=args.sheet_max)
        except (OSError, ValueError) as e:
            from foresplat.errors import one_line

            print(f"foresplat data inspect: error: cannot write {args.sheet}: {one_line(e)}", file=sys.stderr)
            return 2
        print(f"contact sheet {out}")
    return 0
