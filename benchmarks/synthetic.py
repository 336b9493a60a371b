"""Time the synthetic scene generator: a 16-view scene at several resolutions (median over seeds).

    python benchmarks/synthetic.py [--repeats 5] [--threads 1] [--views 16]

Prints one row per resolution and setting: median seconds per scene, rays per second (pixel-centre
rays), and the ratio to the default setting at 64x64, all measured in this one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from foresplat.data.synthetic import SyntheticConfig, generate_scene

SETTINGS = {
    "default (AA 2x2, hard shadows)": {},
    "soft shadows (4 rays)": {"shadow_samples": 4},
    "no anti-aliasing": {"supersample": 1},
    "no shadows, no AA": {"supersample": 1, "shadows": False},
}


def time_scene(cfg: SyntheticConfig, seeds: range) -> float:
    """Median wall-clock seconds of generate_scene over `seeds`."""
    times = []
    for seed in seeds:
        t0 = time.perf_counter()
        generate_scene(seed, cfg)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="scenes (seeds) timed per row")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--views", type=int, default=16, help="views per scene")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224], help="square resolutions")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    generate_scene(0, SyntheticConfig(width=32, height=32, num_views=2))  # warm-up
    print(f"synthetic scenes: {args.views} views, median of {args.repeats} seeds, {args.threads} thread(s)")
    print(f"| {'size':>7} | {'setting':<31} | {'s/scene':>8} | {'Mrays/s':>7} | {'x 64px default':>14} |")
    print(f"|{'-' * 9}|{'-' * 33}|{'-' * 10}|{'-' * 9}|{'-' * 16}|")
    ref = None
    for size in args.sizes:
        for name, over in SETTINGS.items():
            cfg = replace(SyntheticConfig(width=size, height=size, num_views=args.views), **over)
            sec = time_scene(cfg, range(100, 100 + args.repeats))
            ref = sec if ref is None else ref
            mrays = args.views * size * size / sec / 1e6
            print(f"| {size:>3}x{size:<3} | {name:<31} | {sec:8.3f} | {mrays:7.2f} | {sec / ref:14.2f} |")


if __name__ == "__main__":
    main()
