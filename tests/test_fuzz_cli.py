"""Fuzz suite of the `foresplat` CLI (issue 12): hostile files, values, output paths and signals.

Every bad-input case runs the real CLI (`foresplat.cli.main(argv)`) in a subprocess under an
address-space limit (RLIMIT_AS, AS_LIMIT: torch needs ~0.7 GB of address space to import; a case
that tried to allocate gigabytes would die of MemoryError instead of passing) and asserts:
exit status 2, exactly one stderr line `foresplat CMD: error: ...` naming the file / option, no
traceback, and that nothing in the fuzz folder changed (no file touched, no half-written output,
no temporary file left). The cases share ONE interpreter (a driver that calls main() per case) so
the module costs a few torch imports, not one per case. Signals: SIGKILL / SIGINT during an atomic
write, SIGTERM during `foresplat train` (checkpoint saved, exit 130, `--resume auto` continues).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

AS_LIMIT = 4 << 30
TIMEOUT = 240

DRIVER = r"""
import contextlib, io, json, os, resource, sys, traceback
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
cases = json.loads(sys.stdin.read())
from foresplat.cli import main
results = []
for case in cases:
    env = dict(os.environ)
    os.environ.update(case.get("env", {}))
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(case["argv"])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:
            rc = "exception"
            traceback.print_exc()
    os.environ.clear()
    os.environ.update(env)
    results.append({"rc": rc, "err": err.getvalue(), "out": out.getvalue()})
sys.__stdout__.write(json.dumps(results))
"""


def _limited():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root: (type/mode, size, mtime_ns, content hash for files)."""
    import hashlib

    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
            snap[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return snap


def _transforms_scene(root: Path, n: int = 4, size=(8, 6)) -> Path:
    root.mkdir(parents=True)
    frames = []
    for i in range(n):
        Image.fromarray(np.full((size[1], size[0], 3), 40 * i + 20, np.uint8)).save(root / f"f{i}.png")
        angle = 2 * np.pi * i / n
        c2w = np.eye(4)
        c2w[:3, 3] = [3 * np.sin(angle), 0.0, 3 * np.cos(angle)]
        c2w[:3, 2] = c2w[:3, 3] / 3  # OpenGL: the camera looks down -z, towards the origin
        c2w[:3, 0] = np.cross([0, 1, 0], c2w[:3, 2])
        c2w[:3, 1] = np.cross(c2w[:3, 2], c2w[:3, 0])
        frames.append({"file_path": f"f{i}.png", "transform_matrix": c2w.tolist()})
    (root / "transforms.json").write_text(json.dumps({"fl_x": 10.0, "w": size[0], "h": size[1], "frames": frames}))
    return root


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory) -> Path:
    """A folder of good and bad inputs (ply, checkpoint, scene folders) and output traps."""
    from foresplat.io import write_ply
    from foresplat.models import Predictor, PredictorConfig
    from foresplat.refine import init_random

    root = tmp_path_factory.mktemp("fuzz")
    g = init_random(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), 64, seed=0)
    ply = root / "ply"
    ply.mkdir()
    write_ply(ply / "good.ply", g)
    good = (ply / "good.ply").read_bytes()
    (ply / "empty_file.ply").write_bytes(b"")
    (ply / "random.ply").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (ply / "truncated.ply").write_bytes(good[: len(good) // 2])
    (ply / "huge_count.ply").write_text("ply\nformat ascii 1.0\nelement vertex 2000000000\nproperty float x\n"
                                        "end_header\n0\n")
    big = g.map(lambda t: t.clone())
    big.log_scales[5] = 80.0
    write_ply(ply / "log_scale_80.ply", big)
    write_ply(ply / "zero_vertices.ply", g.select(torch.zeros(g.num, dtype=torch.bool)))
    (ply / "nan.ply").write_bytes(good.replace(b"end_header\n", b"end_header\n", 1)[: -4 * 5] + b"\x00\x00\xc0\x7f" * 5)
    (ply / "no_opacity.ply").write_bytes(good.replace(b"property float opacity\n", b"property float opacitx\n"))

    ck = root / "ckpt"
    ck.mkdir()
    Predictor(PredictorConfig.preset("edge-t")).save(ck / "model")
    st, js = (ck / "model.safetensors").read_bytes(), (ck / "model.json").read_text()
    meta = json.loads(js)
    for name, (s, j) in {
        "bad_json": (st, "{not json"),
        "garbage_tensors": (b"\x00" * 100, js),
        "edited_config": (st, json.dumps({**meta, "config": {**meta["config"], "head": {
            **meta["config"]["head"], "hidden_channels": 1 << 16}}})),
        "legacy_huge_config": (st, json.dumps({**{k: v for k, v in meta.items() if k != "meta_sha256"},
                                               "config": {**meta["config"], "head": {
                                                   **meta["config"]["head"], "hidden_channels": 1 << 16}}})),
        "array_json": (st, "[1, 2]"),
    }.items():
        (ck / f"{name}.safetensors").write_bytes(s)
        (ck / f"{name}.json").write_text(j)
    (ck / "no_tensors.json").write_text(js)

    scenes = root / "scenes"
    _transforms_scene(scenes / "good")
    bad_json = _transforms_scene(scenes / "bad_json")
    (bad_json / "transforms.json").write_text('{"frames": [')
    singular = _transforms_scene(scenes / "singular")
    meta_t = json.loads((singular / "transforms.json").read_text())
    meta_t["frames"][1]["transform_matrix"] = np.zeros((4, 4)).tolist()
    (singular / "transforms.json").write_text(json.dumps(meta_t))
    colmap = scenes / "colmap_garbage" / "sparse" / "0"
    colmap.mkdir(parents=True)
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        (colmap / name).write_bytes(np.random.default_rng(1).integers(0, 256, 512, dtype=np.uint8).tobytes())
    (scenes / "colmap_garbage" / "images").mkdir()
    (scenes / "empty").mkdir()

    out = root / "out"
    out.mkdir()
    os.mkfifo(out / "fifo.ply")
    (out / "a_file").write_text("not a folder")
    return root


def _cases(r: Path) -> list[tuple[list[str], list[str]]]:
    """(argv, substrings the one error line must contain)."""
    ply, ck, sc, out = r / "ply", r / "ckpt", r / "scenes", r / "out"
    good_scene = str(sc / "good")
    refine = ["refine", good_scene, "--num-context", "2", "--num-target", "1", "--steps", "2", "--no-progress",
              "--init", "random", "--num-random", "50"]
    render = ["render", "--out", str(out / "renders"), "--views", "1", "--width", "16", "--height", "16"]
    predict = ["predict", good_scene, "--num-context", "2", "--num-target", "1"]
    cases = []
    # bad .ply files (render and refine --init ply:)
    for name, want in [("empty_file", "empty_file.ply"), ("random", "random.ply"), ("truncated", "truncated.ply"),
                       ("huge_count", "2000000000"), ("log_scale_80", "log-scales"), ("zero_vertices", "0 Gaussians"),
                       ("nan", "NaN"), ("no_opacity", "opacity"), ("missing", "missing.ply")]:
        cases.append((render + ["--ply", str(ply / f"{name}.ply")], [want]))
    cases.append((refine[:-4] + ["--init", f"ply:{ply / 'log_scale_80.ply'}", "--out", str(out / "r.ply")],
                  ["log_scale_80.ply", "log-scales"]))
    # bad checkpoints
    for name, want in [("bad_json", "invalid JSON"), ("garbage_tensors", "garbage_tensors"),
                       ("edited_config", "meta_sha256"), ("legacy_huge_config", "does not fit the stored weights"),
                       ("array_json", "JSON object"), ("no_tensors", "no_tensors.safetensors"),
                       ("missing", "missing.json")]:
        cases.append((predict + ["--ckpt", str(ck / name), "--out", str(out / "p.ply")], [want]))
    # bad scene folders
    for name, want in [("bad_json", "transforms.json"), ("singular", "singular/transforms.json"),
                       ("colmap_garbage", "colmap_garbage"), ("empty", "empty"), ("nonexistent", "nonexistent")]:
        cases.append((["data", "inspect", str(sc / name)], [want]))
    cases.append((refine[:1] + [str(sc / "singular")] + refine[2:] + ["--out", str(out / "r.ply")],
                  ["singular/transforms.json", "singular rotation"]))
    # bad values
    cases += [
        (refine + ["--width", "-10", "--out", str(out / "r.ply")], ["--width", "-10"]),
        (refine + ["--width", "100000", "--out", str(out / "r.ply")], ["above the limit", "--max-memory-gb"]),
        (refine + ["--lr-means", "1e30", "--out", str(out / "r.ply")], ["lr_means", "1e+30"]),
        (refine + ["--lr-opacity", "nan", "--out", str(out / "r.ply")], ["lr_opacity"]),
        # a diverging refinement stops with a clear error and writes nothing (the tree check below)
        (refine[:6] + ["--no-progress", "--steps", "30", "--lr-log-scales", "10", "--init", "random", "--num-random", "200",
                        "--out", str(out / "r.ply")], ["NaN/inf", "step"]),
        (refine + ["--eval-steps", "0", "5000", "--out", str(out / "r.ply")], ["--eval-steps", "5000"]),
        (refine + ["--width", "abc", "--out", str(out / "r.ply")], ["--width"]),
        (refine + ["--no-such-option", "1"], ["--no-such-option"]),
        (refine + ["--split", "sideways"], ["--split", "sideways"]),
        (refine + ["--num-random", "0", "--out", str(out / "r.ply")], ["--num-random"]),
        (render + ["--ply", str(ply / "good.ply"), "--width", "100000", "--height", "100000"], ["above the limit"]),
        (render + ["--ply", str(ply / "good.ply"), "--views", "0"], ["--views"]),
        (render + ["--ply", str(ply / "good.ply"), "--views", "1000000000"], ["--views", "1000000000"]),
        (render + ["--ply", str(ply / "good.ply"), "--elevation-deg", "nan"], ["--elevation-deg", "nan"]),
        (render + ["--ply", str(ply / "good.ply"), "--fov-deg", "inf"], ["--fov-deg", "inf"]),
        (["data", "inspect", good_scene, "--thumb", "100000"], ["--thumb", "100000"]),
        (["data", "inspect", good_scene, "--thumb", "x"], ["--thumb"]),
        (["train", "--preset", "tiny", "--lr", "1e30", "--out", str(out / "t")], ["lr", "1e+30"]),
        (["train", "--preset", "nope"], ["--preset"]),
        (["train", "--preset", "tiny", "--width", "100000", "--height", "100000", "--out", str(out / "t")],
         ["above the limit", "100000x100000"]),
        (["eval", "--synthetic", "1", "--synthetic-size", "100000", "--out", str(out / "e")],
         ["--synthetic-size 100000", "above the limit"]),
        (["--max-memory-gb", "-1", "render"], ["--max-memory-gb"]),
    ]
    # bad output paths (all refused before any work)
    cases += [
        (refine + ["--out", str(out / "fifo.ply")], ["fifo.ply", "FIFO"]),
        (refine + ["--out", str(out / "no_dir" / "r.ply")], ["no_dir", "does not exist"]),
        (refine + ["--out", str(out / "a_file" / "r.ply")], ["a_file", "not a folder"]),
        (refine + ["--out", str(out / "metrics.json")], ["metrics.json", "own sidecar"]),
        (refine + ["--out", str(ck / "model.ply")], ["model.json", "not written by foresplat"]),
        (refine + ["--out", str(sc / "good" / "transforms.ply")], ["transforms.json", "not written by foresplat"]),
        (predict + ["--ckpt", str(ck / "model"), "--out", str(ck / "model.ply")], ["model.json"]),
        (render + ["--ply", str(ply / "good.ply"), "--out", str(out / "a_file")], ["a_file", "not a folder"]),
        (["data", "inspect", good_scene, "--out", str(out / "fifo.ply")], ["fifo.ply", "FIFO"]),
        (["train", "--preset", "tiny", "--out", str(out / "a_file")], ["a_file", "not a folder"]),
        (["eval", "--synthetic", "1", "--out", str(out / "a_file")], ["a_file", "not a folder"]),
    ]
    return cases


def test_bad_inputs_exit_2_with_one_line_and_touch_nothing(fuzz_root):
    cases = _cases(fuzz_root)
    before = _snapshot(fuzz_root)
    env = {**os.environ, "FORESPLAT_DEBUG": "", "FORESPLAT_MAX_MEMORY_GB": ""}
    env.pop("FORESPLAT_DEBUG")
    env.pop("FORESPLAT_MAX_MEMORY_GB")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(AS_LIMIT)], input=json.dumps([{"argv": a} for a, _ in cases]),
                          capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    failures = []
    for (argv, wants), res in zip(cases, results):
        cmd = argv[0] if not argv[0].startswith("--") else ""
        err = res["err"]
        head = err.split(": error: ")[0]  # "foresplat CMD" (data: "foresplat data inspect")
        ok = (res["rc"] == 2 and err.count("\n") == 1 and err.endswith("\n") and ": error: " in err
              and head.startswith(f"foresplat {cmd}".strip()) and "Traceback" not in err
              and all(w in err for w in wants))
        if not ok:
            failures.append(f"{' '.join(argv)}\n  -> rc {res['rc']}, stderr: {err[-800:]!r}")
    assert not failures, f"{len(failures)}/{len(cases)} cases failed:\n" + "\n".join(failures)
    after = _snapshot(fuzz_root)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}
    assert time.perf_counter() - t0 < TIMEOUT


def test_debug_flag_shows_the_traceback(fuzz_root):
    cases = [["--debug", "refine", str(fuzz_root / "nonexistent")],  # the global flag: a full traceback
             ["refine", str(fuzz_root / "nonexistent")]]  # and the next command is back to one line
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(AS_LIMIT)], input=json.dumps([{"argv": a} for a in cases]),
                          capture_output=True, text=True, timeout=TIMEOUT)
    debug, plain = json.loads(proc.stdout)
    assert debug["rc"] == "exception" and "Traceback" in debug["err"] and "FileNotFoundError" in debug["err"]
    assert plain["rc"] == 2 and plain["err"].count("\n") == 1 and "Traceback" not in plain["err"]


WRITER = r"""
import os, signal, sys, time
from foresplat.io import atomic_open
target, how = sys.argv[1], sys.argv[2]
with atomic_open(target, "wb") as f:
    f.write(b"x" * (1 << 20))
    f.flush()
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    else:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
"""


def test_signals_during_a_write_leave_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "model.ply"
    target.write_bytes(b"old")
    proc = subprocess.run([sys.executable, "-c", WRITER, str(target), "int"], capture_output=True, text=True,
                          timeout=TIMEOUT, preexec_fn=_limited)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ply"] and target.read_bytes() == b"old"
    proc = subprocess.run([sys.executable, "-c", WRITER, str(target), "kill"], capture_output=True, text=True,
                          timeout=TIMEOUT, preexec_fn=_limited)
    assert proc.returncode == -signal.SIGKILL and target.read_bytes() == b"old"
    stale = [p for p in tmp_path.iterdir() if p.name != "model.ply"]
    assert len(stale) == 1 and stale[0].name.startswith(".tmp-") and stale[0].stat().st_size == 1 << 20
    from foresplat.io import atomic_write_bytes

    atomic_write_bytes(target, b"new")  # the next write removes the dead writer's temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ply"] and target.read_bytes() == b"new"


def test_sigterm_during_train_saves_and_resume_auto_continues(tmp_path):
    import importlib.util

    backend = "auto" if importlib.util.find_spec("foresplat.render.cpu") else "reference"
    out = tmp_path / "run"
    base = [sys.executable, "-m", "foresplat.cli", "train", "--preset", "tiny", "--out", str(out), "--val-scenes",
            "0", "--no-progress", "--backend", backend, "--ckpt-interval", "0", "--log-interval", "1"]
    proc = subprocess.Popen(base + ["--iterations", "500"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_limited)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("foresplat train: interrupted by SIGTERM after iteration ") and "--resume auto" in last
    assert "Traceback" not in stderr
    step = int(last.split("after iteration ")[1].split()[0])
    from foresplat.train.state import list_checkpoints

    assert [s for s, _ in list_checkpoints(out)] == [step]
    proc = subprocess.run(base + ["--iterations", str(step + 1), "--resume", "auto"], capture_output=True, text=True,
                          timeout=TIMEOUT, preexec_fn=_limited)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == step
