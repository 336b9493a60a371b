"""Starting-Gaussian construction time (init_random = uniform points + 3-nearest-neighbour scales).

    python benchmarks/knn_init.py [--sizes 10000 100000 1000000] [--brute-max 20000]

For each size: the wall time of `init_random` (the KD-tree kNN of `knn_mean_sq_dist` plus the
Gaussian tensors), the kNN alone, and, up to --brute-max points, the old all-pairs search
(`knn_mean_sq_dist_bruteforce`, quadratic) for comparison; the two kNN results are checked equal.
"""

from __future__ import annotations

import argparse
import time

import torch

from foresplat.refine.init import init_random, knn_mean_sq_dist, knn_mean_sq_dist_bruteforce


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--brute-max", type=int, default=20_000, help="largest size also timed by brute force")
    args = ap.parse_args()
    bounds = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    print(f"torch threads {torch.get_num_threads()}")
    print(f"{'points':>9} | {'init_random s':>13} | {'kNN (KD-tree) s':>15} | {'kNN (all pairs) s':>17}")
    for n in args.sizes:
        t0 = time.perf_counter()
        g = init_random(bounds, n, seed=0)
        t_init = time.perf_counter() - t0
        t0 = time.perf_counter()
        d = knn_mean_sq_dist(g.means)
        t_knn = time.perf_counter() - t0
        brute = "-"
        if n <= args.brute_max:
            t0 = time.perf_counter()
            ref = knn_mean_sq_dist_bruteforce(g.means)
            brute = f"{time.perf_counter() - t0:.3f}"
            torch.testing.assert_close(d, ref, rtol=2e-3, atol=1e-6)  # float32 cdist rounding
        print(f"{n:>9} | {t_init:>13.3f} | {t_knn:>15.3f} | {brute:>17}", flush=True)


if __name__ == "__main__":
    main()
