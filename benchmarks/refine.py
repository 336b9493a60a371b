"""Refiner speed and memory: steps/s at 64x64 / 8k and 128x128 / 32k Gaussians, and peak RSS vs run length.

    python benchmarks/refine.py [--threads 2] [--steps 100] [--skip-memory]

Scenes are generated (foresplat.data.synthetic, 16 views, 12 used as context); the Gaussians are
random in the scene bounds (init_random). Every configuration is timed in this one process (the
machine may be shared and noisy: compare the ratios). Columns: backend, size, N, steps/s from the
median step time and from the mean, ms/step, and the share of a step spent in the Adam update.
Rows "stub" replace the rasterizer by a trivial differentiable function: the refiner's own
per-step cost (view sampling, loss and its backward, gradient checks, Adam).
The memory part runs 200 and 2000 steps in fresh subprocesses and compares their peak RSS during
the run (VmHWM reset after the scene setup via /proc/self/clear_refs; else ru_maxrss): a refiner
that keeps no per-step state has a ratio ~1.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

import torch

from foresplat.data.synthetic import SyntheticConfig, generate_scene
from foresplat.refine import RefineConfig, Refiner, adam_update, init_random, refine, scene_bounds


def _setup(size: int, n: int):
    scene = generate_scene(11, SyntheticConfig(width=size, height=size, num_views=16, supersample=1))
    context = scene.subset(list(range(12)))
    g = init_random(scene_bounds(context), n, seed=0)
    return context, g


def time_config(backend: str, size: int, n: int, steps: int, warmup: int = 3) -> dict:
    """Runs warmup + steps refinement steps; returns timing statistics."""
    context, g = _setup(size, n)
    cfg = RefineConfig(steps=warmup + steps, backend=backend, seed=0)
    res = refine(g, context, cfg)
    sec = res.step_seconds[warmup:]
    # Adam update alone (in place, same sizes)
    ref = Refiner(cfg, context)
    gg = ref.start(g)
    state = ref.init_state(gg)
    grads = gg.map(lambda t: torch.randn_like(t))
    lrs = ref.lrs(0)
    with torch.no_grad():
        for _ in range(3):
            gg, state = adam_update(gg, grads, state, lrs, inplace=True)
        t0 = time.perf_counter()
        reps = 50
        for _ in range(reps):
            gg, state = adam_update(gg, grads, state, lrs, inplace=True)
        adam = (time.perf_counter() - t0) / reps
    med, mean = statistics.median(sec), statistics.fmean(sec)
    return {"backend": backend, "size": size, "n": n, "sps_median": 1 / med, "sps_mean": 1 / mean,
            "ms": 1000 * mean, "adam_share": adam / mean}


def _status_kib(field: str) -> int | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in KiB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def overhead_config(size: int, n: int, steps: int) -> dict:
    """Refiner cost without rasterization: a stub renderer (pixel colours = sigmoid of the first
    H*W Gaussians' DC colours, so gradients reach the parameters) isolates sampling, the loss,
    the gradient checks and the Adam update."""
    from foresplat.render import RenderOutput

    context, g = _setup(size, n)
    if n < size * size:
        raise ValueError("overhead_config: needs n >= size * size")

    def stub(gs, cams, backgrounds=None, backend="auto"):
        c = torch.sigmoid(gs.sh[: size * size, 0, :]).view(1, size, size, 3)
        return RenderOutput(c, c[..., :1], c[..., :1])

    cfg = RefineConfig(steps=steps, seed=0)
    ref = Refiner(cfg, context)
    ref._render_fn = stub
    gg = ref.start(g)
    state = ref.init_state(gg)
    gen = torch.Generator().manual_seed(0)
    for k in range(3):
        gg, state, _ = ref.step(gg, state, k, gen, inplace=True)
    sec = []
    for k in range(steps):
        t0 = time.perf_counter()
        gg, state, _ = ref.step(gg, state, k, gen, inplace=True)
        sec.append(time.perf_counter() - t0)
    med, mean = statistics.median(sec), statistics.fmean(sec)
    return {"backend": "stub", "size": size, "n": n, "sps_median": 1 / med, "sps_mean": 1 / mean,
            "ms": 1000 * mean, "adam_share": float("nan")}


def peak_rss_child(steps: int, size: int, n: int, backend: str) -> None:
    """(child process) runs `steps` steps; prints the peak RSS during the run and the RSS at its
    start, in MiB. The peak is reset after the setup (scene generation) through
    /proc/self/clear_refs when the kernel allows it, else it is the process peak (ru_maxrss)."""
    context, g = _setup(size, n)
    refine(g, context, RefineConfig(steps=2, backend=backend, seed=0))  # warm caches / native build
    start = _status_kib("VmRSS") or 0
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    refine(g, context, RefineConfig(steps=steps, backend=backend, seed=0))
    peak = _status_kib("VmHWM") if reset else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"{peak / 1024:.1f} {start / 1024:.1f} {int(reset)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--steps", type=int, default=100, help="timed steps per native configuration")
    p.add_argument("--reference-steps", type=int, default=5, help="timed steps of the reference backend")
    p.add_argument("--skip-memory", action="store_true", help="skip the 200 vs 2000 step RSS comparison")
    p.add_argument("--memory-only", action="store_true", help="only the 200 vs 2000 step RSS comparison")
    p.add_argument("--memory-backend", default="cpu", help="backend of the memory runs (default cpu)")
    p.add_argument("--child", nargs=4, metavar=("STEPS", "SIZE", "N", "BACKEND"), help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.child:
        peak_rss_child(int(a.child[0]), int(a.child[1]), int(a.child[2]), a.child[3])
        return 0
    from foresplat.render import available_backends

    native = "cpu" if "cpu" in available_backends() else None
    rows = []
    if native and not a.memory_only:
        rows.append(time_config(native, 64, 8192, a.steps))
        rows.append(time_config(native, 128, 32768, max(10, a.steps // 4)))
    elif not native:
        print("note: the native cpu backend is unavailable; timing the reference backend only")
    if not a.memory_only:
        rows.append(time_config("reference", 64, 8192, a.reference_steps, warmup=1))
        rows.append(overhead_config(64, 8192, a.steps))
        rows.append(overhead_config(128, 32768, max(10, a.steps // 4)))
    base = rows[0]["sps_mean"] if rows else 1.0
    if rows:
        print(f"\nrefinement speed ({a.threads} threads; shared machine: noisy)")
        print(f"{'backend':<10} {'size':>8} {'N':>7} {'steps/s (med)':>14} {'steps/s (mean)':>15} "
              f"{'ms/step':>9} {'adam %':>7} {'vs row 1':>9}")
    for r in rows:
        print(f"{r['backend']:<10} {r['size']:>4}x{r['size']:<3} {r['n']:>7} {r['sps_median']:>14.1f} "
              f"{r['sps_mean']:>15.1f} {r['ms']:>9.2f} {100 * r['adam_share']:>6.1f}% "
              f"{r['sps_mean'] / base:>9.3f}")
    if not a.skip_memory:
        backend = a.memory_backend if (a.memory_backend != "cpu" or native) else "reference"
        size, n = (64, 8192) if backend != "reference" else (16, 256)
        rss, start, reset = {}, {}, True
        for steps in (200, 2000):
            out = subprocess.run([sys.executable, __file__, "--threads", str(a.threads), "--child", str(steps),
                                  str(size), str(n), backend], check=True, capture_output=True, text=True)
            peak, begin, ok = out.stdout.strip().splitlines()[-1].split()
            rss[steps], start[steps], reset = float(peak), float(begin), reset and ok == "1"
        what = "peak RSS during the run" if reset else "process peak RSS (could not reset after setup)"
        print(f"\n{what} ({backend}, {size}x{size}, N={n}):")
        print(f"  200 steps: {rss[200]:.1f} MiB (RSS at start {start[200]:.1f}); 2000 steps: {rss[2000]:.1f} MiB "
              f"(at start {start[2000]:.1f}); ratio 2000/200 {rss[2000] / rss[200]:.3f}, growth over the run "
              f"{rss[2000] - start[2000]:.1f} vs {rss[200] - start[200]:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
