"""Rasterizer speed: dense `reference` vs native tiled `cpu` backend, forward and forward+backward.

Scene: pixel-aligned Gaussians as a feed-forward model emits them: one Gaussian per pixel of 4
context views (each a quarter of the rendered resolution in pixels, same field of view), back-projected
onto a smooth wavy surface at depths 2-4, scale 1-2 px (of the rendered view) at its depth, mixed
opacities, SH colours; rendered into one target view between the context cameras.
Prints a table of median times and ratios measured in this run (shared machines: numbers are noisy).
On a machine shared with other busy processes, set OMP_WAIT_POLICY=PASSIVE (before Python starts):
libgomp's default spin-waiting after each parallel region then steals the cores from the work.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/render.py [--threads 2] [--sh-degree 0] [--repeats 9]
        [--skip-reference-large]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from foresplat import Cameras, Gaussians
from foresplat.cameras import look_at
from foresplat.render import render


def make_scene(res: int, views: int = 4, sh_degree: int = 0, seed: int = 0, dtype=torch.float32):
    """Gaussians [views * (res/2)^2] from `views` context cameras and one target camera of res x res."""
    g = torch.Generator().manual_seed(seed)
    src = res // 2
    f_target = 0.9 * res  # ~58 degree field of view
    f_src = f_target * src / res
    up = torch.tensor([0.0, -1.0, 0.0], dtype=dtype)
    target = torch.zeros(3, dtype=dtype)
    angles = torch.linspace(-0.35, 0.35, views, dtype=dtype)
    eyes = torch.stack([3.0 * torch.sin(angles), 0.15 * torch.cos(3 * angles), -3.0 * torch.cos(angles)], -1)
    src_views = look_at(eyes, target.expand(views, 3), up)  # [V, 4, 4]
    ys, xs = torch.meshgrid(torch.arange(src, dtype=dtype), torch.arange(src, dtype=dtype), indexing="ij")
    rays = torch.stack([(xs + 0.5 - src / 2) / f_src, (ys + 0.5 - src / 2) / f_src,
                        torch.ones_like(xs)], -1).reshape(-1, 3)  # camera-space rays, z = 1
    means = []
    for v in range(views):
        # wavy surface: depth along each ray in 2.2-3.8
        depth = 3.0 + 0.4 * torch.sin(3 * rays[:, 0] + v) * torch.cos(2 * rays[:, 1]) \
            + 0.2 * torch.rand(rays.shape[0], generator=g, dtype=dtype)
        cam = rays * depth[:, None]
        c2w = torch.linalg.inv(src_views[v])
        means.append(cam @ c2w[:3, :3].T + c2w[:3, 3])
    means = torch.cat(means)  # [N, 3]
    n = means.shape[0]
    target_view = look_at(torch.tensor([[0.3, 0.05, -3.1]], dtype=dtype), target[None], up)
    z = (means @ target_view[0, :3, :3].T + target_view[0, :3, 3])[:, 2].clamp_min(0.5)
    px = 1.0 + torch.rand(n, 3, generator=g, dtype=dtype)  # 1-2 px
    scales = px * z[:, None] / f_target
    k = (sh_degree + 1) ** 2
    sh = torch.randn(n, k, 3, generator=g, dtype=dtype) * 0.2
    sh[:, 0] = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) / 0.28209479177387814
    gauss = Gaussians(means, torch.randn(n, 4, generator=g, dtype=dtype), torch.log(scales),
                      torch.randn(n, generator=g, dtype=dtype) * 1.5 + 0.5, sh)
    K = torch.tensor([[[f_target, 0, res / 2], [0, f_target, res / 2], [0, 0, 1]]], dtype=dtype)
    return gauss, Cameras(target_view, K, res, res)


CPU_SECONDS: dict[tuple[int, str, str], float] = {}  # (res, backend, pass) -> median process CPU time


def _time(fn, repeats: int, key=None) -> float:
    """Median wall seconds of fn() over `repeats` runs after a warm-up; the median process CPU time
    (all threads; robust to other processes competing for the cores) is kept in CPU_SECONDS[key]."""
    fn()  # warm-up (and first-use compile)
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if key is not None:
        CPU_SECONDS[key] = statistics.median(cpu)
    return statistics.median(times)


def measure(gauss: Gaussians, cams: Cameras, backend: str, repeats: int) -> tuple[float, float]:
    """Median wall seconds of forward (no grad) and forward+backward (grads of all five raw tensors)."""
    leaf = gauss.detach().requires_grad_()
    weights = torch.rand(cams.num, cams.height, cams.width, 3, generator=torch.Generator().manual_seed(1))

    def fwd():
        with torch.no_grad():
            render(gauss, cams, backend=backend)

    def fwd_bwd():
        out = render(leaf, cams, backend=backend)
        loss = (out.colors * weights).sum() + out.depths.mean()
        torch.autograd.grad(loss, leaf.tensors())
    res = cams.width
    return _time(fwd, repeats, (res, backend, "fwd")), _time(fwd_bwd, repeats, (res, backend, "f+b"))


def measure_reference_banded(gauss: Gaussians, cams: Cameras, rows: int) -> tuple[float, float]:
    """Dense reference on a large image, one band of `rows` rows at a time (its autograd graph for
    the full image would not fit in memory): summed seconds of forward and of forward+backward."""
    leaf = gauss.detach().requires_grad_()
    fwd = fwd_bwd = cpu_fwd = cpu_fwd_bwd = 0.0
    for top in range(0, cams.height, rows):
        band = cams.cropped(0, top, cams.width, min(rows, cams.height - top))
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            render(gauss, band, backend="reference")
        t1, c1 = time.perf_counter(), time.process_time()
        out = render(leaf, band, backend="reference")
        torch.autograd.grad(out.colors.sum() + out.depths.mean(), leaf.tensors())
        t2, c2 = time.perf_counter(), time.process_time()
        fwd, fwd_bwd = fwd + (t1 - t0), fwd_bwd + (t2 - t1)
        cpu_fwd, cpu_fwd_bwd = cpu_fwd + (c1 - c0), cpu_fwd_bwd + (c2 - c1)
    CPU_SECONDS[(cams.width, "reference", "fwd")] = cpu_fwd
    CPU_SECONDS[(cams.width, "reference", "f+b")] = cpu_fwd_bwd
    return fwd, fwd_bwd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sh-degree", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--skip-reference-large", action="store_true", help="skip reference at 128/16k")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for res in (64, 128, 256):
        gauss, cams = make_scene(res, sh_degree=args.sh_degree)
        cpu = measure(gauss, cams, "cpu", args.repeats)
        ref = None
        if res == 64:
            ref = measure(gauss, cams, "reference", 2)
        elif res == 128 and not args.skip_reference_large:
            ref = measure_reference_banded(gauss, cams, rows=8)
        rows.append((res, gauss.num, ref, cpu))
    policy = os.environ.get("OMP_WAIT_POLICY", "unset (libgomp spins after parallel regions)")
    print(f"threads={args.threads} sh_degree={args.sh_degree} OMP_WAIT_POLICY={policy} (medians of "
          f"{args.repeats} for cpu; shared machine, noisy; reference at 128 = one banded pass)")
    print(f"{'image':>9} {'gaussians':>9} | {'ref fwd':>9} {'ref f+b':>9} | {'cpu fwd':>9} {'cpu f+b':>9} |"
          f" {'fwd x':>7} {'f+b x':>7}")
    for res, n, ref, cpu in rows:
        r = ref or (math.nan, math.nan)
        print(f"{res:>4}x{res:<4} {n:>9} | {r[0] * 1e3:>7.0f}ms {r[1] * 1e3:>7.0f}ms | {cpu[0] * 1e3:>7.2f}ms "
              f"{cpu[1] * 1e3:>7.2f}ms | {r[0] / cpu[0]:>7.0f} {r[1] / cpu[1]:>7.0f}")
    print("process CPU time (all threads; robust to other processes using the cores):")
    for res, n, ref, _ in rows:
        cpu_f, cpu_fb = CPU_SECONDS[(res, "cpu", "fwd")], CPU_SECONDS[(res, "cpu", "f+b")]
        line = f"  {res}x{res}/{n}: cpu fwd {cpu_f * 1e3:.1f}ms f+b {cpu_fb * 1e3:.1f}ms"
        if ref is not None:
            ref_f, ref_fb = CPU_SECONDS[(res, "reference", "fwd")], CPU_SECONDS[(res, "reference", "f+b")]
            line += (f"; reference fwd {ref_f * 1e3:.0f}ms f+b {ref_fb * 1e3:.0f}ms; "
                     f"ratio fwd x{ref_f / cpu_f:.0f} f+b x{ref_fb / cpu_fb:.0f}")
        print(line)
    base = rows[0][3]
    print("cpu growth vs 64x64/4k (pixels and Gaussians both x4 per step): " + ", ".join(
        f"{res}x{res}: fwd x{cpu[0] / base[0]:.1f}, f+b x{cpu[1] / base[1]:.1f}" for res, _, _, cpu in rows[1:]))
    # growth with Gaussians alone (fixed 128x128 view) and with pixels alone (fixed 16k Gaussians)
    g16, c128 = make_scene(128, sh_degree=args.sh_degree)
    g64, _ = make_scene(256, sh_degree=args.sh_degree)
    t_base = measure(g16, c128, "cpu", args.repeats)[1]
    t_more_g = measure(g64, c128, "cpu", args.repeats)[1]
    t_more_px = measure(g16, c128.rescaled(256, 256), "cpu", args.repeats)[1]
    print(f"cpu f+b at 128x128/16k: {t_base * 1e3:.2f}ms; with x4 Gaussians (64k, same view): "
          f"x{t_more_g / t_base:.2f}; with x4 pixels (256x256, same Gaussians): x{t_more_px / t_base:.2f}")


if __name__ == "__main__":
    main()
