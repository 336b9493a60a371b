"""Benchmark of the training rules: memory flat in K for metagrad, growing for unrolled; metagrad's time cost.

    python benchmarks/metagrad.py [--backend auto] [--size 48] [--points 1500] [--mem-ks 50 500]
                                  [--unrolled-ks 1 2 4 8] [--time-ks 50 100]

Three tables, each measured in one run (ratios are what to read; this machine is shared and noisy):
  1. peak memory of one `metagrad` outer iteration (rule + backward) for K in --mem-ks, on a
     synthetic scene at --size px with --points Gaussians: flat in K (anchors keep no graph);
  2. peak memory of one `unrolled` outer iteration for K in --unrolled-ks on a tiny scene
     (24 px, 150 Gaussians, reference renderer, float64): grows linearly with K;
  3. wall time of a `metagrad` outer iteration (default RuleConfig: stride 10, one anchor view)
     divided by the time of K plain refinement steps (the same Refiner, in place), for K in --time-ks.
Memory = peak resident set size above the resident size just before the iteration, each case in a
fresh subprocess (Linux: the peak counter VmHWM is reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace

import torch

from foresplat.data.scene import split_views
from foresplat.data.synthetic import SyntheticConfig, generate_scene
from foresplat.gaussians import Gaussians
from foresplat.meta import RuleConfig, build_rule
from foresplat.refine import RefineConfig, Refiner, init_from_points


def _status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in KiB."""
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def _trim_heap() -> None:
    """Returns freed heap memory to the OS (glibc malloc_trim), so that RSS counts live memory only."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> None:
    """Resets this process's peak RSS counter (VmHWM) to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def setup(size: int, points: int, dtype: torch.dtype = torch.float32, seed: int = 0):
    """(split 12 context + 4 target views, G0 [points] in `dtype` from the scene's points) of synthetic scene `seed`."""
    scene = generate_scene(seed, SyntheticConfig(width=size, height=size))
    split = split_views(scene, num_context=12, num_target=4, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(scene.points.shape[0], generator=gen)[:points]
    g0 = init_from_points(scene.points[idx], scene.point_colors[idx], sh_degree=1).to(dtype)
    return split, g0


def one_iteration(config: RuleConfig, split, g0: Gaussians, seed: int = 0) -> dict[str, float]:
    """One outer iteration: the rule on a leaf copy of g0, then backward; returns the rule's logs + wall time."""
    rule = build_rule(config)
    g = g0.clone().requires_grad_(True)
    t0 = time.perf_counter()
    out = rule(g, split, torch.Generator().manual_seed(seed))
    out.loss.backward()
    logs = dict(out.logs)
    logs["wall"] = time.perf_counter() - t0
    return logs


def child_memory(rule: str, k: int, args) -> dict[str, float]:
    """Runs in a fresh process: peak RSS delta (MiB) of one outer iteration of `rule` with K = k."""
    if rule == "unrolled":
        split, g0 = setup(24, 150, torch.float64)
        config = RuleConfig(name="unrolled", k_min=k, k_max=k, stride=1, unrolled_max_k=max(k, 1),
                            anchor_views_per_anchor=None, refine=RefineConfig(backend="reference"))
    else:
        split, g0 = setup(args.size, args.points)
        config = RuleConfig(name=rule, k_min=k, k_max=k, backend=args.backend,
                            refine=RefineConfig(backend=args.backend))
    one_iteration(replace(config, k_min=1, k_max=1), split, g0)  # warm-up (lazy imports, kernels)
    _trim_heap()
    base = _status_kib("VmRSS")
    _reset_peak()
    logs = one_iteration(config, split, g0)
    peak = _status_kib("VmHWM")
    return {"peak_mib": (peak - base) / 1024, "wall": logs["wall"]}


def memory_case(rule: str, k: int, args) -> dict[str, float]:
    """Spawns this script in child mode for (rule, k) and parses its JSON line."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", rule, str(k), "--backend", args.backend,
           "--size", str(args.size), "--points", str(args.points)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"memory case {rule} K={k} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])



def print_memory_table(title: str, rule: str, ks: list[int], args) -> None:
    """Prints a Markdown table of the peak RSS delta of one `rule` outer iteration for each K in `ks`."""
    print(f"\n## {title}")
    print("| K | peak RSS delta (MiB) | ratio to first | wall (s) |\n|---|---|---|---|")
    first = None
    for k in ks:
        r = memory_case(rule, k, args)
        first = first or max(r["peak_mib"], 1e-9)
        print(f"| {k} | {r['peak_mib']:.1f} | {r['peak_mib'] / first:.2f} | {r['wall']:.2f} |", flush=True)

def plain_steps_time(split, g0: Gaussians, refine: RefineConfig, k: int, seed: int = 0) -> float:
    """Seconds for K plain refinement steps (in place, no graph), as `refine` runs them."""
    refiner = Refiner(refine, split.context)
    g = g0.map(lambda t: t.detach().clone().requires_grad_(True))
    state = refiner.init_state(g)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(k):
        g, state, _ = refiner.step(g, state, step, gen, inplace=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="auto", help="render backend of the metagrad cases")
    p.add_argument("--size", type=int, default=48, help="image size of the metagrad cases (px)")
    p.add_argument("--points", type=int, default=1500, help="Gaussians in G0 for the metagrad cases")
    p.add_argument("--mem-ks", type=int, nargs="+", default=[50, 500])
    p.add_argument("--unrolled-ks", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--time-ks", type=int, nargs="+", default=[50, 100])
    p.add_argument("--repeats", type=int, default=2, help="timing repeats (the minimum is kept)")
    p.add_argument("--stride", type=int, default=10, help="anchor stride of the timing table (paper: 40)")
    p.add_argument("--skip-memory", action="store_true", help="only the timing tables (3., 4.)")
    p.add_argument("--workers-k", type=int, default=0,
                   help="table 4: an outer batch of 2 scenes with K = this, one after the other vs "
                        "TrainConfig.rule_workers = 2 threads (0 = skip)")
    p.add_argument("--child", nargs=2, metavar=("RULE", "K"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.child:
        print(json.dumps(child_memory(args.child[0], int(args.child[1]), args)))
        return 0

    print(f"# metagrad benchmark: backend={args.backend}, {args.size}x{args.size} px, "
          f"{args.points} Gaussians, 12 context + 4 target views; torch threads={torch.get_num_threads()}")
    if not args.skip_memory:
        print_memory_table("1. metagrad: peak memory of one outer iteration vs K (flat expected)",
                           "metagrad", args.mem_ks, args)
        print_memory_table("2. unrolled: peak memory vs K (24x24 px, 150 Gaussians, reference, float64; grows "
                           "with K)", "unrolled", args.unrolled_ks, args)

    print(f"\n## 3. metagrad outer iteration time / K plain refinement steps (stride {args.stride}; target <= 1.2)")
    print("| K | anchors | plain K steps (s) | metagrad (s) | ratio | ratio w/o zero-step log | "
          "inner / anchor / zero-step (s) |")
    print("|---|---|---|---|---|---|---|")
    split, g0 = setup(args.size, args.points)
    refine = RefineConfig(backend=args.backend)
    for k in args.time_ks:
        config = RuleConfig(name="metagrad", k_min=k, k_max=k, stride=args.stride, backend=args.backend,
                            refine=refine)
        one_iteration(replace(config, k_min=2, k_max=2), split, g0)  # warm-up
        plain = min(plain_steps_time(split, g0, refine, k) for _ in range(args.repeats))
        runs = [one_iteration(config, split, g0) for _ in range(args.repeats)]
        best = min(runs, key=lambda r: r["wall"])
        print(f"| {k} | {int(best['num_anchors'])} | {plain:.2f} | {best['wall']:.2f} | "
              f"{best['wall'] / plain:.2f} | {(best['wall'] - best['time_zero_step']) / plain:.2f} | "
              f"{best['time_inner']:.2f} / {best['time_anchor']:.2f} / "
              f"{best['time_zero_step']:.2f} |", flush=True)
    if args.workers_k:
        print_workers_table(args)
    return 0


def print_workers_table(args) -> None:
    """Table 4: one metagrad outer batch of 2 scenes, sequential vs 2 threads (train.loop.run_rule):
    wall and process CPU seconds, and whether the gradients on G0 are bit-identical."""
    from foresplat.train.loop import run_rule

    config = RuleConfig(name="metagrad", k_min=args.workers_k, k_max=args.workers_k, stride=args.stride,
                        backend=args.backend, refine=RefineConfig(backend=args.backend))
    rule = build_rule(config)
    data = [setup(args.size, args.points, seed=s) for s in (0, 1)]

    def batch(workers: int):
        g0s = [g.clone().requires_grad_(True) for _, g in data]
        gens = [torch.Generator().manual_seed(i) for i in range(2)]
        c0, t0 = time.process_time(), time.perf_counter()
        outs = run_rule(rule, g0s, [s for s, _ in data], gens, workers)
        torch.stack([o.loss for o in outs]).sum().backward()
        return time.perf_counter() - t0, time.process_time() - c0, [t.grad for g in g0s for t in g.tensors()]

    batch(2)  # warm-up
    print(f"\n## 4. one outer batch of 2 scenes, K = {args.workers_k}, stride {args.stride}: "
          "rule_workers 1 vs 2 (threads)")
    print("| repeat | 1 worker wall / CPU (s) | 2 workers wall / CPU (s) | wall speed-up | identical gradients |")
    print("|---|---|---|---|---|")
    for r in range(args.repeats):
        w1, c1, g1 = batch(1)
        w2, c2, g2 = batch(2)
        same = all(torch.equal(a, b) for a, b in zip(g1, g2))
        print(f"| {r + 1} | {w1:.2f} / {c1:.2f} | {w2:.2f} / {c2:.2f} | {w1 / w2:.2f} | {same} |", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
