"""Edge deployment: a teacher predictor vs its distilled student, PyTorch vs onnxruntime (fp32, int8).

    python benchmarks/edge.py --teacher runs/edge_teacher/model --student-dir runs/edge_student
    foresplat bench edge --teacher ... --student-dir ...          # the same

--student-dir is a `foresplat distill ... --finetune-iterations N` run folder (model.*, head_vanilla/,
head_metagrad/). The teacher and the MetaGrad-fine-tuned student (the student's architecture) are exported to ONNX
(dynamic views and size, traced at 64 px) and quantised (dynamic int8).

Table 1 (speed and size): parameters, .onnx file size (fp32 / int8), median latency of one
prediction (batch 1, no grad) with PyTorch eager, onnxruntime fp32 and onnxruntime int8 at 64 / 128 /
224 px with 6 and 12 views, and the peak resident memory of the process. Each (model, runtime) runs
in a fresh subprocess that goes through the settings from the smallest to the largest; "peak MB" is
that process's maximum RSS after the setting (it includes the runtime itself: the onnxruntime
workers never import PyTorch). Threads: --threads for PyTorch and onnxruntime alike.

Table 2 (quality): mean PSNR (dB) on the target views of held-out synthetic scenes (the distillation
preset's generator, seeds EVAL_SEED_START + 2000 + i) after 0 / 200 / 1000 refinement steps, for the
teacher, the student, its vanilla- and MetaGrad-fine-tuned heads, and the MetaGrad student run
through onnxruntime fp32 and int8 (the quantisation's PSNR cost).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = [(64, 6), (64, 12), (128, 6), (128, 12), (224, 6), (224, 12)]
RUNTIMES = ("torch", "ort-fp32", "ort-int8")


# ---- inputs without PyTorch ------------------------------------------------------------------------
def numpy_views(V: int, S: int, seed: int = 0):
    """One batch (B = 1) of V random S x S views on an arc looking at the origin, numpy float32."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.random((1, V, S, S, 3), dtype=np.float32)
    viewmats = np.zeros((1, V, 4, 4), np.float32)
    for i, a in enumerate(np.linspace(-0.6, 0.6, V)):
        eye = np.array([4 * np.sin(a), 0.2 * np.cos(3 * a), -4 * np.cos(a)])
        z = -eye / np.linalg.norm(eye)  # looks at the origin (OpenCV: +z forward, +y down)
        x = np.cross(np.array([0.0, -1.0, 0.0]), z)
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        R = np.stack([x, y, z])
        viewmats[0, i, :3, :3], viewmats[0, i, :3, 3], viewmats[0, i, 3, 3] = R, -R @ eye, 1.0
    K = np.array([[0.9 * S, 0, S / 2], [0, 0.9 * S, S / 2], [0, 0, 1]], np.float32)
    Ks = np.broadcast_to(K, (1, V, 3, 3)).copy()
    return images, viewmats, Ks, np.array([0.5], np.float32), np.array([20.0], np.float32)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


# ---- worker: one (model, runtime) in a fresh process -------------------------------------------------
def worker(runtime: str, model_path: str, repeats: int, threads: int) -> list[dict]:
    """Latency (median of `repeats` after a warm-up) and peak RSS per setting, smallest first."""
    if runtime == "torch":
        import torch

        from foresplat.models import Predictor

        torch.set_num_threads(threads)
        model = Predictor.from_checkpoint(model_path).eval()

        def call(args):
            with torch.no_grad():
                model(*(torch.from_numpy(a) for a in args))
    else:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]

        def call(args):
            sess.run(None, dict(zip(names, args)))
    rows = []
    for S, V in SETTINGS:
        args = numpy_views(V, S)
        call(args)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            call(args)
            times.append(time.perf_counter() - t)
        rows.append({"size": S, "views": V, "seconds": statistics.median(times), "peak_mb": peak_rss_mb()})
    return rows


def run_worker(runtime: str, model_path: Path, repeats: int, threads: int) -> list[dict]:
    """Runs `worker` in a fresh interpreter (clean peak-memory accounting); returns its rows."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, __file__, "--worker", runtime, str(model_path), str(repeats), str(threads)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {runtime} {model_path} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- quality --------------------------------------------------------------------------------------
def quality(methods: dict, scenes: int, steps: tuple[int, ...], distill_preset: str) -> dict[str, dict[int, float]]:
    """Mean target-view PSNR per method after each refinement step count on held-out synthetic scenes."""
    from dataclasses import replace

    import torch

    from foresplat.cameras import Cameras
    from foresplat.data.scene import split_views
    from foresplat.data.synthetic import EVAL_SEED_START, generate_scene
    from foresplat.evaluate.metrics import psnr
    from foresplat.refine import RefineConfig, refine
    from foresplat.render import render
    from foresplat.train import train_preset

    syn = train_preset(distill_preset).synthetic
    syn = replace(syn, num_views=max(syn.num_views, 10))
    acc: dict[str, dict[int, list[float]]] = {m: {k: [] for k in steps} for m in methods}
    for i in range(scenes):
        scene = generate_scene(EVAL_SEED_START + 2000 + i, syn)
        split = split_views(scene, 6, 4, "even")
        t = split.target
        cams = Cameras(t.cameras.viewmats, t.cameras.Ks, t.width, t.height)
        for name, predict in methods.items():
            g0 = predict(split.context).detach().to(torch.float32)
            run = refine(g0, split.context, RefineConfig(steps=max(steps), seed=0), record_steps=steps)
            for k in steps:
                with torch.no_grad():
                    img = render(run.recorded[k], cams).colors.clamp(0, 1)
                acc[name][k].append(float(psnr(img, t.images.float()).mean()))
            print(f"  quality: scene {i + 1}/{scenes} {name}: " +
                  " ".join(f"{k}:{acc[name][k][-1]:.2f}" for k in steps), flush=True)
    return {m: {k: statistics.mean(v) for k, v in d.items()} for m, d in acc.items()}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        runtime, path, repeats, threads = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(worker(runtime, path, repeats, threads)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True, help="teacher predictor checkpoint")
    ap.add_argument("--student-dir", required=True, help="a `foresplat distill --finetune-iterations N` run folder")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scenes", type=int, default=3, help="held-out synthetic scenes of table 2")
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 200, 1000])
    ap.add_argument("--preset", default="demo", help="training preset of the distillation (its synthetic scenes)")
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument("--no-latency", action="store_true")
    a = ap.parse_args()

    import torch

    from foresplat.export import ExportConfig, OnnxPredictor, export_onnx, quantize_int8
    from foresplat.export.scene_predict import predict_scene_onnx
    from foresplat.models import Predictor

    torch.set_num_threads(a.threads)
    sd = Path(a.student_dir)
    mg = sd / "head_metagrad" / "model"
    # the MetaGrad-fine-tuned student has the student's architecture: it stands for "student" in table 1
    paths = {"teacher": Path(a.teacher), "student": mg if Path(f"{mg}.json").is_file() else sd / "model"}
    info = json.loads((sd / "distill.json").read_text())
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="foresplat-edge-"))
    models, onnx = {}, {}
    for name, p in paths.items():
        models[name] = Predictor.from_checkpoint(p).eval()
        onnx[name] = {"fp32": export_onnx(models[name], tmp / f"{name}.onnx", ExportConfig(height=64, width=64))}
        onnx[name]["int8"] = quantize_int8(onnx[name]["fp32"], tmp / f"{name}.int8.onnx")
    print(f"exported and quantised both models in {time.perf_counter() - t0:.0f} s", flush=True)

    lat: dict[tuple[str, str], list[dict]] = {}
    for name, p in ({} if a.no_latency else paths).items():
        for rt in RUNTIMES:
            target = p if rt == "torch" else onnx[name]["fp32" if rt == "ort-fp32" else "int8"]
            lat[name, rt] = run_worker(rt, target, a.repeats, a.threads)
            print(f"  latency: {name} {rt} done", flush=True)

    n_t = models["teacher"].num_parameters()
    if lat:
        print(f"\nTable 1. Speed and size (batch 1, {a.threads} threads, median of {a.repeats}); student: "
              f"{info['student_parameters'] / info['teacher_parameters']:.0%} of the teacher's parameters\n")
        hdr = "| model | runtime | params | file MB | " + " | ".join(f"{S}px/{V}v ms" for S, V in SETTINGS) + \
              " | peak MB (224px/12v) |"
        print(hdr)
        print("|" + "---|" * (hdr.count("|") - 1))
        for name in paths:
            n = models[name].num_parameters()
            for rt in RUNTIMES:
                rows = lat[name, rt]
                f = "" if rt == "torch" else f"{onnx[name]['fp32' if rt == 'ort-fp32' else 'int8'].stat().st_size / 1e6:.2f}"
                cells = " | ".join(f"{r['seconds'] * 1e3:.1f}" for r in rows)
                print(f"| {name} | {rt} | {n:,} ({n / n_t:.0%}) | {f} | {cells} | {rows[-1]['peak_mb']:.0f} |")

    if a.no_quality:
        return
    steps = tuple(sorted(set(a.steps)))
    preset = a.preset
    heads = {"student + vanilla head": sd / "head_vanilla" / "model", "student + MetaGrad head": mg}
    methods = {"teacher": models["teacher"].predict, "student": Predictor.from_checkpoint(sd / "model").eval().predict}
    for label, p in heads.items():
        if Path(f"{p}.json").is_file():
            methods[label] = Predictor.from_checkpoint(p).eval().predict
    if "student + MetaGrad head" in methods:
        for kind in ("fp32", "int8"):
            runner = OnnxPredictor(onnx["student"][kind], threads=a.threads)
            methods[f"student + MetaGrad head, onnxruntime {kind}"] = lambda scene, r=runner: predict_scene_onnx(r, scene)
    t1 = time.perf_counter()
    res = quality(methods, a.scenes, steps, preset)
    print(f"\nTable 2. Mean target PSNR (dB), {a.scenes} held-out synthetic scenes, 6 context + 4 target views, "
          f"after refinement steps ({time.perf_counter() - t1:.0f} s)\n")
    print("| model | " + " | ".join(f"step {k}" for k in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for m, d in res.items():
        print(f"| {m} | " + " | ".join(f"{d[k]:.2f}" for k in steps) + " |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
