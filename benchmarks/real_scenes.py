"""Every real scene under a data root, loaded with no options: format, views, size, bounds, points, time.

    python benchmarks/real_scenes.py [ROOT]        (default: ../shared/data/real next to the repo)

Scenes are found by `foresplat.data.catalog.discover_scenes`. Per scene: the detected format, the
number of views, the image size, near/far, the number of sparse points and the fraction of the
point depths (over all views, points in front only) inside [near, far], the depth of the point
nearest to all optical axes relative to near/far (min over views / near, max over views / far:
both should be > 1 and < 1), and the wall time of `load_scene` (median of --repeat loads; images
decoded with the default 4 threads). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from foresplat.data import detect_format, load_scene
    from foresplat.data.catalog import discover_scenes
    from foresplat.data.loaders.geometry import optical_axes_focus

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
    ap.add_argument("root", nargs="?", type=Path, default=default)
    ap.add_argument("--repeat", type=int, default=1, help="loads per scene (the median time is shown)")
    args = ap.parse_args()
    print("| scene | format | views | image W x H | near | far | points | point depths in [near, far] "
          "| focus depth min/near, max/far | load s |")
    print("|---|---|---:|---|---:|---:|---:|---:|---|---:|")
    for path in discover_scenes(args.root):
        times = []
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            s = load_scene(path)
            times.append(time.perf_counter() - t0)
        v = s.cameras.viewmats.double().numpy()
        f = optical_axes_focus(v)
        focus = "-"
        if f is not None:
            zf = (np.einsum("vij,j->vi", v[:, :3, :3], f) + v[:, :3, 3])[:, 2]
            focus = f"{zf.min() / s.near:.2f}, {zf.max() / s.far:.2f}"
        npts, inside = 0, "-"
        if s.points is not None:
            X = s.points.double().numpy()
            npts = len(X)
            z = (np.einsum("vij,pj->vpi", v[:, :3, :3], X) + v[:, None, :3, 3])[..., 2]
            z = z[z > 0]
            inside = f"{100 * float(((z > s.near) & (z < s.far)).mean()):.1f}%"
        print(f"| {path.name} | {detect_format(path)} | {s.num_views} | {s.width} x {s.height} | {s.near:.4g} "
              f"| {s.far:.4g} | {npts} | {inside} | {focus} "
              f"| {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()
