"""Predictor speed: forward time and parameter count per backbone size, and demo training speed.

    python benchmarks/predict.py                 # or: foresplat bench predict
    python benchmarks/predict.py --sizes edge-s edge-m --repeats 3 --no-train

Table 1: parameters, Gaussians and median forward time (no grad, batch 1) at 64x64 / 6 views and
224x224 / 12 views, with the ratio to the first size listed. Table 2: iterations per second of the
`demo` training preset (steady state, the first iteration excluded) and where the time goes.
Timings on a shared machine are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from foresplat.cameras import look_at
from foresplat.models import PREDICTOR_PRESETS, Predictor, PredictorConfig


def views(V: int, H: int, W: int):
    """One scene: V cameras on an arc looking at the origin, random images."""
    g = torch.Generator().manual_seed(0)
    ang = torch.linspace(0, 1.2, V)
    eye = torch.stack([3 * torch.cos(ang), 3 * torch.sin(ang), torch.full((V,), 0.8)], -1)
    viewmats = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))[None]
    Ks = torch.tensor([[1.1 * W, 0, W / 2], [0, 1.1 * W, H / 2], [0, 0, 1.0]]).expand(1, V, 3, 3).clone()
    return torch.rand(1, V, H, W, 3, generator=g), viewmats, Ks, torch.tensor([0.5]), torch.tensor([10.0])


def time_forward(model: Predictor, inputs, repeats: int) -> float:
    """Median seconds of a no-grad forward pass (after one warm-up)."""
    with torch.no_grad():
        model(*inputs)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(*inputs)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_forward(sizes: list[str], repeats: int) -> None:
    settings = [(64, 6), (224, 12)]
    rows = []
    for size in sizes:
        torch.manual_seed(0)
        m = Predictor(PredictorConfig.preset(size)).eval()
        row = {"size": size, "params": m.num_parameters()}
        for res, V in settings:
            row[f"{res}/{V}"] = time_forward(m, views(V, res, res), repeats)
            row[f"n{res}/{V}"] = V * (res // m.prediction_stride) ** 2
        rows.append(row)
        del m
    base = rows[0]
    head = "| size | params | " + " | ".join(f"{r}x{r} / {v} views: ms (ratio), Gaussians" for r, v in settings) + " |"
    print(head)
    print("|" + "---|" * (2 + len(settings)))
    for r in rows:
        cells = [f"{1e3 * r[f'{s}/{v}']:.0f} ({r[f'{s}/{v}'] / base[f'{s}/{v}']:.2f}x), {r[f'n{s}/{v}']}"
                 for s, v in settings]
        print(f"| {r['size']} | {r['params'] / 1e6:.2f}M | " + " | ".join(cells) + " |")


def bench_train(iterations: int) -> None:
    from foresplat.data.synthetic import TRAIN_SEED_START
    from foresplat.train import train, train_preset
    from foresplat.train.data import synthetic_scene

    with tempfile.TemporaryDirectory() as tmp:
        cfg = train_preset("demo", iterations=iterations, val_scenes=0, ckpt_interval=0, log_interval=1,
                           out_dir=tmp, progress=False)
        for seed in range(cfg.synthetic_pool):  # fill the per-process scene cache, as a long run would have
            synthetic_scene(TRAIN_SEED_START + seed, cfg.synthetic)
        train(cfg)
        recs = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()][1:]
    keys = ["time_data", "time_forward", "time_rule", "time_backward_step"]
    tot = [sum(r[k] for k in keys) for r in recs]
    print(f"\ndemo preset ({cfg.model.backbone.name} {cfg.width}x{cfg.height}, batch {cfg.batch_size}, "
          f"{cfg.num_context}+{cfg.num_target} views, rule {cfg.rule.name}, backend {cfg.backend}), "
          f"{len(recs)} iterations (the first excluded):")
    print(f"| iterations/s | s/iteration | " + " | ".join(k.removeprefix('time_') + " share" for k in keys) + " |")
    print("|" + "---|" * (2 + len(keys)))
    mean = statistics.mean(tot)
    shares = [statistics.mean(r[k] for r in recs) / mean for k in keys]
    print(f"| {1 / mean:.3f} | {mean:.2f} | " + " | ".join(f"{s:.0%}" for s in shares) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=list(PREDICTOR_PRESETS), choices=list(PREDICTOR_PRESETS))
    p.add_argument("--repeats", type=int, default=3, help="timed forward passes per setting (median)")
    p.add_argument("--train-iterations", type=int, default=8, help="demo training iterations (the first excluded)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 = stable timings on a shared machine)")
    p.add_argument("--no-train", action="store_true", help="skip the training-speed table")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    bench_forward(a.sizes, a.repeats)
    if not a.no_train:
        bench_train(a.train_iterations)


if __name__ == "__main__":
    main()
