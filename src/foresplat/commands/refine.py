"""`foresplat refine SCENE`: refine initial Gaussians on a scene's context views; write a .ply + metrics.

    foresplat refine ../shared/data/nerf_synthetic_lego --init points --steps 2000 --out lego.ply \\
        --eval-steps 0 200 500 1000 2000 --width 100 --height 100
    foresplat refine synthetic:3 --init random --steps 500 --out s3.ply

The scene (any format `foresplat.data.load_scene` reads, or `synthetic:SEED` for a generated one)
is resized if asked, split into context / target views (`split_views`), refined on the context
views with a progress bar (loss, PSNR of the step's view), and evaluated on the held-out target
views (PSNR / SSIM) before the chosen steps and at the end. Outputs: the refined .ply (atomic) and
a JSON of the metrics next to it (same stem). Ctrl-C or SIGTERM writes both for the last state, exits 130.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import torch
import tyro

from foresplat.data.scene import split_views
from foresplat.data.spec import load_scene_spec, resize_to
from foresplat.refine.config import RefineConfig
from foresplat.refine.init import initialize, scene_background
from foresplat.refine.refiner import Refiner, view_metrics
from foresplat.train.signals import StopOnSignal


@dataclass
class RefineCommand:
    """Refine Gaussians on a scene's context views and write a .ply plus a metrics JSON."""

    scene: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="SCENE")]
    """Scene folder or file (any format load_scene reads), or synthetic:SEED."""
    init: str = "points"
    """Initial Gaussians: points (sparse points, else a visual hull of the masks), random, predicted (the
    predictor shipped with the package) or ply:PATH (another predictor: --ckpt). predicted may end with
    +consistent (only depth-consistent Gaussians), +foreground (none of the background colour) and
    +points (the scene's points added), e.g. predicted+foreground (foresplat.models.filters)."""
    ckpt: str | None = None
    """Initialise from this predictor checkpoint's prediction on the context views (replaces --init ckpt:PATH)."""
    model: str | None = None
    """Initialise from a registered model's prediction instead (edge, anysplat, da3; foresplat.models.adapter)."""
    weights: str | None = None
    """Local weights of --model (nothing is downloaded)."""
    head: str | None = None
    """Head weights of a fine-tune of --model (`foresplat train --model ...` writes OUT/head)."""
    out: Path = Path("refined.ply")
    """Output .ply; the metrics go to the same path with suffix .json."""
    eval_steps: tuple[int, ...] = (0, 200, 500, 1000, 2000)
    """Held-out evaluation before these steps (the last step is always evaluated; given steps outside
    [0, steps] are an error, the default's are skipped)."""
    num_context: int = 12
    """Context views (refined on)."""
    num_target: int = 4
    """Held-out target views (evaluated on; 0 = no evaluation)."""
    split: Literal["random", "even", "first"] = "even"
    """How views are split (foresplat.data.split_views); the default is the same in predict, refine and eval."""
    split_seed: int = 0
    """Seed of the random split."""
    width: int | None = None
    """Resize the views to this width (height follows the aspect ratio if not given)."""
    height: int | None = None
    """Resize the views to this height (width follows the aspect ratio if not given)."""
    downscale: int | None = None
    """Loader downscale factor (pre-downscaled image folders), applied before --width/--height."""
    num_random: int = 10_000
    """Gaussians for --init random (and points carved from masks)."""
    sh_degree: int | None = None
    """SH degree (0..3) of the refined Gaussians and the written .ply; the initialisation's higher bands start
    at zero (3 = what the original 3DGS code loads). Default: 0 for points/random, a ply's or predictor's own."""
    renders: bool = True
    """Write the held-out target views' renders and ground truth as PNGs to OUT's folder OUT_STEM_renders/."""
    auto_background: bool = True
    """Without --background: use the scene's uniform masked-out colour (e.g. white for NeRF-synthetic)."""
    progress: bool = True
    """Show a progress bar."""
    view: bool = False
    """Stream the refinement to a browser viewer (viser, foresplat[viewer]) at --host:--port."""
    view_every: int = 10
    """With --view: update the splats, step, loss and held-out PSNR every this many steps."""
    host: str = "127.0.0.1"
    """With --view: address to serve on (anything but 127.0.0.1/localhost exposes it to the network)."""
    port: int = 8080
    """With --view: port to serve on (the next free one when taken; 0 = any free port)."""
    view_wait: float | None = None
    """With --view: seconds the viewer stays open after refinement (default: until Ctrl-C)."""
    view_capture: Path | None = None
    """With --view: wait for a browser, then write its frame of the first target view to
    DIR/step_XXXXX.png (+ .json camera) at every update."""
    refine: Annotated[RefineConfig, tyro.conf.arg(name="")] = field(default_factory=RefineConfig)
    """Refiner settings (steps, learning rates, seed, backend, ...)."""


def run(cmd: RefineCommand) -> int:
    """Runs the command (see module docstring); returns the exit code (130 after Ctrl-C)."""
    from tqdm import tqdm

    from foresplat.io import atomic_write_json, check_output_path, sidecar_record, write_ply

    cfg = cmd.refine.validate()
    out = Path(cmd.out)
    metrics_path = out.with_suffix(".json")
    check_output_path(out, sidecars={metrics_path: "foresplat refine"})
    init = cmd.init
    if cmd.ckpt is not None:  # --init predicted+SUFFIXES names the filters of this checkpoint's prediction
        from foresplat.refine.init import START_SUFFIXES, split_start_suffixes

        base, words = split_start_suffixes(cmd.init)
        if base not in ("points", "predicted", f"ckpt:{cmd.ckpt}") or (base == "points" and words):
            raise ValueError(f"--ckpt {cmd.ckpt} and --init {cmd.init}: give one initialisation")
        init = f"ckpt:{cmd.ckpt}" + "".join(f"+{w}" for w in START_SUFFIXES if w in words)
    elif init.startswith("ckpt:"):
        from foresplat.commands._vocab import deprecation

        print(deprecation("foresplat refine", "--init ckpt:PATH", "--ckpt PATH"), file=sys.stderr)
    if cmd.sh_degree is not None and cmd.sh_degree not in (0, 1, 2, 3):
        raise ValueError(f"--sh-degree: expected 0, 1, 2 or 3, got {cmd.sh_degree}")
    if cmd.view:  # before any loading: a missing viser or a bad --view-every is reported at once
        from foresplat.viewer import require_viser

        require_viser()
        if cmd.view_every < 1:
            raise ValueError(f"--view-every: expected a positive number of steps, got {cmd.view_every}")
    elif cmd.view_capture is not None:
        raise ValueError("--view-capture: needs --view")
    bad_steps = [s for s in cmd.eval_steps if not 0 <= s <= cfg.steps]
    if bad_steps and tuple(cmd.eval_steps) != RefineCommand.__dataclass_fields__["eval_steps"].default:
        raise ValueError(f"--eval-steps: {bad_steps} outside [0, --steps {cfg.steps}]")
    scene = load_scene_spec(cmd.scene, downscale=cmd.downscale,
                            num_views=max(16, cmd.num_context + cmd.num_target))
    from foresplat.limits import check_memory, refine_bytes, resized_size

    if cmd.num_random < 1:
        raise ValueError(f"--num-random: expected a positive number of Gaussians, got {cmd.num_random}")
    w, h = resized_size(scene.width, scene.height, cmd.width, cmd.height)
    n_init = max(cmd.num_random, 0 if scene.points is None else int(scene.points.shape[0]))
    check_memory(refine_bytes(scene.num_views, w, h, n_init, cfg.views_per_step),
                 f"refine of {scene.num_views} views at {w}x{h} px with ~{n_init} Gaussians")
    scene = resize_to(scene, cmd.width, cmd.height).validate()
    split = split_views(scene, cmd.num_context, cmd.num_target, cmd.split, cmd.split_seed)
    if cfg.background is None and cmd.auto_background:
        bg = scene_background(split.context)
        if bg is not None:
            cfg = dataclasses.replace(cfg, background=bg)
    alignment = None
    if cmd.model is not None:
        from foresplat.models.adapter import load_adapter
        from foresplat.refine.init import predict_on

        if cmd.weights is None or cmd.ckpt is not None or cmd.init != "points":
            raise ValueError(f"--model {cmd.model}: give --weights PATH, and no --ckpt / --init")
        adapter = load_adapter(cmd.model, cmd.weights, cmd.head).eval()
        init = f"model:{cmd.model}"
        g0 = predict_on(adapter, split.context)
        alignment = adapter.last_alignment[0].summary() if adapter.last_alignment else None
    elif cmd.weights is not None or cmd.head is not None:
        raise ValueError("--weights/--head: name the model too (--model NAME)")
    else:
        g0 = initialize(init, split.context, num_random=cmd.num_random, seed=cfg.seed,
                        sh_degree=cmd.sh_degree or 0, background=cfg.background)
    if cmd.sh_degree is not None:
        from foresplat.io import pad_sh_degree

        try:
            g0 = pad_sh_degree(g0, cmd.sh_degree)
        except ValueError as e:
            raise ValueError(f"--sh-degree: {e}") from None
    refiner = Refiner(cfg, split.context)
    g = refiner.start(g0)
    state = refiner.init_state(g)
    evals = sorted({s for s in cmd.eval_steps if 0 <= s <= cfg.steps} | {cfg.steps}) if cmd.num_target else []
    report: dict = {
        "scene": scene.name, "scene_spec": cmd.scene, "init": init, "width": scene.width,
        "height": scene.height, "context_indices": split.context_indices,
        "target_indices": split.target_indices, "num_gaussians": g.num, "extent": refiner.extent,
        "config": dataclasses.asdict(cfg), "eval": [], "losses": [], "train_psnr": [],
        "steps_done": 0, "interrupted": False, **sidecar_record("foresplat refine", out),
        **({"model": cmd.model, "weights": cmd.weights, "head": cmd.head, "camera_alignment": alignment}
           if cmd.model else {}),
    }

    def evaluate(step: int) -> None:
        m = view_metrics(g, split.target, backend=cfg.backend, background=cfg.background)
        report["eval"].append({"step": step, "psnr": sum(m["psnr"]) / len(m["psnr"]),
                               "ssim": sum(m["ssim"]) / len(m["ssim"]),
                               "psnr_per_view": m["psnr"], "ssim_per_view": m["ssim"]})

    def save() -> None:
        write_ply(out, g.detach(), sh_degree=cmd.sh_degree)
        atomic_write_json(metrics_path, report)

    live = None
    if cmd.view:
        from foresplat.viewer.live import LiveRefinement

        live = LiveRefinement(split, host=cmd.host, port=cmd.port, background=cfg.background,
                              backend=cfg.backend, capture_dir=cmd.view_capture, title=f"foresplat refine {scene.name}")
    gen = torch.Generator().manual_seed(int(cfg.seed))
    stats: dict = {}
    bar = tqdm(total=cfg.steps, desc=f"refine {scene.name}", unit="step", disable=not cmd.progress,
               dynamic_ncols=True)
    t_start = time.perf_counter()
    try:
        with StopOnSignal("writing the current state after this step, then stopping "
                          "(send it again to stop at once; the state is still written)") as stop:
            for k in range(cfg.steps + 1):
                if live is not None and (k % cmd.view_every == 0 or k == cfg.steps):
                    t_view = time.perf_counter()
                    live.update(k, cfg.steps, g, report["losses"][-1] if report["losses"] else None)
                    report["view_seconds"] = report.get("view_seconds", 0.0) + time.perf_counter() - t_view
                if k in evals:
                    evaluate(k)
                    e = report["eval"][-1]
                    bar.write(f"step {k}: held-out PSNR {e['psnr']:.2f} dB, SSIM {e['ssim']:.4f}")
                if k == cfg.steps:
                    break
                g, state, loss = refiner.step(g, state, k, gen, inplace=True, stats=stats)
                report["losses"].append(loss)
                report["train_psnr"].append(stats["psnr"])
                report["steps_done"] = k + 1
                bar.update(1)
                if k % 10 == 0 or k == cfg.steps - 1:
                    bar.set_postfix(loss=f"{loss:.4f}", psnr=f"{stats['psnr']:.2f}", refresh=False)
                if stop.requested():
                    report["interrupted"] = True
                    break
    except KeyboardInterrupt:
        report["interrupted"] = True
    finally:
        bar.close()
    report["seconds"] = time.perf_counter() - t_start - report.get("view_seconds", 0.0)
    if cmd.renders and split.target.num_views:
        from foresplat.commands.render import write_view_renders

        folder = out.with_name(f"{out.stem}_renders")
        r = write_view_renders(g, split.target, split.target_indices, folder, background=cfg.background,
                               backend=cfg.backend)
        report["renders"] = {"folder": str(folder), "psnr": r["psnr"], "ssim": r["ssim"]}
    save()
    print(f"wrote {out} ({g.num} Gaussians, {report['steps_done']} steps) and {metrics_path}"
          + (f"; held-out renders in {report['renders']['folder']}" if "renders" in report else ""))
    if live is not None:
        live.close(0.0 if report["interrupted"] else cmd.view_wait)
    if report["interrupted"]:
        print("interrupted: wrote the last state", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `foresplat refine` (see module docstring)."""
    from foresplat.commands._vocab import modernize

    cmd = tyro.cli(RefineCommand, args=modernize("refine", argv), prog="foresplat refine")
    return run(cmd)
