"""Model adapters at tiny sizes with random weights: time of encode (frozen), head + decode, and one
head-only backward, per model, on a CPU or a GPU.

    python benchmarks/adapters.py --device cuda --views 4 --size 224 --repeats 10
    foresplat bench adapters --device cpu                 # the same

Models: edge (edge-t), anysplat (a 4-layer, 32-wide VGGT aggregator; SH degree 4; voxel fusion), vggt
(the same network, no fusion), da3 (ViT-S DinoV2 with narrow heads, SH degree 2) and pi3x (a 2-layer,
32-wide DINOv2, 4 decoder blocks, a narrow Gaussian head of SH degree 3): the networks of
foresplat.models.adapters.tiny, which tests/test_adapters_*.py use too. Models whose optional package
is missing are listed as such. Times are the median over --repeats runs after one warm-up (CUDA
synchronised); the input is --views random views of --size x --size px (a multiple of 112: of 14 and
of 16). Prints a markdown table. --full-heads prints the parameter counts of the released models'
Gaussian heads (what head-only fine-tuning trains).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _median_seconds(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, device: torch.device, views: int, size: int, repeats: int) -> dict:
    """Times of one model: encode, head + decode, head backward (seconds), Gaussian count, parameters."""
    from foresplat.cameras import look_at

    from foresplat.models.adapters.tiny import tiny_adapter

    adapter = tiny_adapter(name).to(device).eval()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(1, views, size, size, 3, generator=g).to(device)
    ang = torch.linspace(0, 1.2, views)
    eye = torch.stack([3 * torch.cos(ang), 3 * torch.sin(ang), torch.ones_like(ang)], -1)
    vm = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))[None].to(device)
    K = torch.tensor([[1.2 * size, 0, size / 2], [0, 1.2 * size, size / 2], [0, 0, 1.0]])
    Ks = K.expand(1, views, 3, 3).clone().to(device)
    near, far = torch.tensor([1.0], device=device), torch.tensor([8.0], device=device)
    cams = (vm, Ks, near, far) if adapter.needs_cameras else (None, None, near, far)
    with torch.no_grad():
        f = adapter.encode(images, *cams)
    t_enc = _median_seconds(lambda: adapter.encode(images, *cams), repeats, device)
    with torch.no_grad():
        t_head = _median_seconds(lambda: adapter.decode(adapter.run_head(f), f), repeats, device)
        n = adapter.decode(adapter.run_head(f), f).num

    def backward() -> None:
        adapter.zero_grad(set_to_none=True)
        gs = adapter.decode(adapter.run_head(f), f)
        sum(t.float().square().mean() for t in gs.tensors()).backward()

    t_bwd = _median_seconds(backward, repeats, device)
    return {"model": name, "encode_s": t_enc, "head_decode_s": t_head, "head_backward_s": t_bwd,
            "gaussians": n, "params": adapter.num_parameters(), "head_params": adapter.num_parameters(True)}


def full_head_sizes() -> list[tuple[str, int]]:
    """Parameter counts of the released models' Gaussian heads, built alone at full size (no weights)."""
    import importlib

    from foresplat.models.adapter import MissingExtraError

    out = []
    try:
        from foresplat.models.adapters.anysplat import ffgs_anysplat

        ffgs_anysplat()
        gs = importlib.import_module("ffgs.models.anysplat.gs_head")
        head = gs.VGGT_DPT_GS_Head(dim_in=2048, patch_size=14, output_dim=1 + 7 + 3 * 25 + 1, activation="norm_exp",
                                   conf_activation="expp1", features=256)  # AnySplat's (VGGT-1B, SH degree 4)
        out.append(("anysplat / vggt: encoder.gaussian_param_head", sum(p.numel() for p in head.parameters())))
    except MissingExtraError as e:
        out.append((f"anysplat / vggt: not installed ({e})", 0))
    try:
        from foresplat.models.adapters.da3 import da3_modules

        da3_modules()
        from depth_anything_3.model.gsdpt import GSDPT

        head = GSDPT(dim_in=3072, output_dim=38, features=256, out_channels=[256, 512, 1024, 1024])  # da3-giant
        out.append(("da3-giant: gs_head", sum(p.numel() for p in head.parameters())))
    except MissingExtraError as e:
        out.append((f"da3: not installed ({e})", 0))
    try:
        from foresplat.models.adapters.pi3x import build_gs_head

        head = build_gs_head(1024)  # over Pi3X's decoder (1024 wide), SH degree 3
        out.append(("pi3x: the new Gaussian head", sum(p.numel() for p in head.parameters())))
    except MissingExtraError as e:
        out.append((f"pi3x: not installed ({e})", 0))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--size", type=int, default=112, help="image side, a multiple of 112 (14 and 16)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["edge", "anysplat", "vggt", "da3", "pi3x"])
    ap.add_argument("--full-heads", action="store_true",
                    help="only print the parameter counts of the released models' Gaussian heads")
    args = ap.parse_args(argv)
    if args.full_heads:
        for name, n in full_head_sizes():
            print(f"{name}: {n:,} parameters")
        return 0
    if args.size % 112:
        raise SystemExit(f"--size: expected a multiple of 112 (of 14 and of 16), got {args.size}")
    from foresplat.models.adapter import MissingExtraError

    device = torch.device(args.device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"{args.views} views of {args.size}x{args.size} px, median of {args.repeats}, torch {torch.__version__}\n")
    print("| model | params | head params | Gaussians | encode ms | head+decode ms | head backward ms |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        try:
            r = measure(name, device, args.views, args.size, args.repeats)
        except MissingExtraError as e:
            print(f"| {name} | not installed: {e} | | | | | |")
            continue
        print(f"| {name} | {r['params']:,} | {r['head_params']:,} | {r['gaussians']:,} | {1e3 * r['encode_s']:.1f} | "
              f"{1e3 * r['head_decode_s']:.1f} | {1e3 * r['head_backward_s']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
