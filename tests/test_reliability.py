"""Issue 12 (reliability), one test per defect at the level of the shared mechanism: the atomic
writer and output-path checks, the CLI error path, memory limits, value validation, training
signals / resume fallback and the demo's ownership record. The end-to-end CLI cases (subprocesses
under an address-space limit) are in test_fuzz_cli.py."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest
import torch

from foresplat.errors import MemoryLimitError, OutputPathError, TrainingInterrupted, UserError, run_command
from foresplat.io import atomic_write, atomic_write_bytes, check_output_path, read_ply, save_checkpoint, write_ply
from foresplat.io.atomic import remove_stale_temps


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _gaussians(n: int = 20):
    from foresplat.refine import init_random

    return init_random(torch.tensor([[0.0, 0, 0], [1, 1, 1]]), n, seed=0)


# ---- defect 3: the atomic writer ------------------------------------------------------------------
def test_atomic_writer_refuses_fifo_and_folder_targets(tmp_path):
    fifo = tmp_path / "pipe.ply"
    os.mkfifo(fifo)
    with pytest.raises(OutputPathError, match="FIFO"):
        atomic_write_bytes(fifo, b"data")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a FIFO, not replaced by a file
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputPathError, match="is a folder"):
        atomic_write_bytes(tmp_path / "d", b"x")
    assert _listing(tmp_path) == ["d", "pipe.ply"]


def test_atomic_writer_reports_the_original_error_when_cleanup_fails(tmp_path, monkeypatch):
    real_unlink = Path.unlink

    def failing_unlink(self, missing_ok=False):
        if self.name.startswith(".tmp-"):
            raise PermissionError("clean-up failed")
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", failing_unlink)
    with pytest.raises(RuntimeError, match="the writer's own error"):
        with atomic_write(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("the writer's own error")


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    target = tmp_path / "model.ply"
    dead = tmp_path / f".tmp-999999-0123abcd-{target.name}"  # pid 999999 > pid_max: not running
    alive = tmp_path / f".tmp-{os.getpid()}-0123abcd-{target.name}"
    other = tmp_path / ".tmp-999999-0123abcd-other.ply"
    for p in (dead, alive, other):
        p.write_bytes(b"x" * 100)
    atomic_write_bytes(target, b"new")
    assert _listing(tmp_path) == sorted([alive.name, other.name, target.name])
    old = time.time() - 2 * 86400  # a day-old temp of a live pid (pid reuse) goes too
    os.utime(alive, (old, old))
    assert remove_stale_temps(target) == [alive]


def test_checkpoint_files_get_the_mode_of_a_plain_open(tmp_path):
    umask = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "ck", {"w": torch.ones(2)}, {})
        modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in tmp_path.iterdir()}
        assert modes == {"ck.safetensors": 0o644, "ck.json": 0o644}  # safetensors alone would be 0600
        os.chmod(tmp_path / "ck.safetensors", 0o640)  # an overwrite keeps the file's mode
        save_checkpoint(tmp_path / "ck", {"w": torch.zeros(2)}, {})
        assert stat.S_IMODE(os.stat(tmp_path / "ck.safetensors").st_mode) == 0o640
    finally:
        os.umask(umask)


# ---- defect 2: output paths and sidecars ---------------------------------------------------------
def test_output_path_checks(tmp_path):
    out = tmp_path / "model.ply"
    side = out.with_suffix(".json")
    assert check_output_path(out, sidecars={side: "foresplat refine"}) == out
    side.write_text('{"kind": "predictor"}')  # a checkpoint's model.json
    with pytest.raises(OutputPathError, match="model.json already exists and was not written by foresplat"):
        check_output_path(out, sidecars={side: "foresplat refine"})
    side.write_text(json.dumps({"written_by": {"command": "foresplat refine", "output": "model.ply"}}))
    check_output_path(out, sidecars={side: "foresplat refine"})  # our own sidecar: replaced
    side.write_text(json.dumps({"written_by": {"command": "foresplat refine", "output": "other.ply"}}))
    with pytest.raises(OutputPathError, match="not written by foresplat for this output"):
        check_output_path(out, sidecars={side: "foresplat refine"})
    with pytest.raises(OutputPathError, match="its own sidecar"):
        check_output_path(tmp_path / "x.json", sidecars={tmp_path / "x.json": "foresplat refine"})
    with pytest.raises(OutputPathError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "x.ply")
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputPathError, match="is not a folder"):
        check_output_path(tmp_path / "file" / "x.ply")
    os.mkfifo(tmp_path / "fifo.ply")
    with pytest.raises(OutputPathError, match="FIFO"):
        check_output_path(tmp_path / "fifo.ply")
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(OutputPathError, match="not writable"):
            check_output_path(ro / "x.ply")


# ---- defect 7: the CLI error path ----------------------------------------------------------------
def test_run_command_prints_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.delenv("FORESPLAT_DEBUG", raising=False)

    def bad():
        raise FileNotFoundError("scene 'x': no such file or folder\n(second line)")

    assert run_command("refine", bad) == 2
    err = capsys.readouterr().err
    assert err == "foresplat refine: error: scene 'x': no such file or folder (second line)\n"
    monkeypatch.setenv("FORESPLAT_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        run_command("refine", bad)

    def interrupted():
        raise TrainingInterrupted("interrupted by SIGINT after iteration 3")

    assert run_command("train", interrupted) == 130
    assert capsys.readouterr().err == "foresplat train: interrupted by SIGINT after iteration 3\n"
    monkeypatch.delenv("FORESPLAT_DEBUG")

    def bug():
        raise KeyError("a bug, not a user error")

    with pytest.raises(KeyError):  # programming errors keep their traceback
        run_command("refine", bug)


def test_cli_global_options(capsys, monkeypatch):
    from foresplat.cli import main

    monkeypatch.delenv("FORESPLAT_DEBUG", raising=False)
    assert main(["--max-memory-gb", "abc", "render"]) == 2
    assert "--max-memory-gb" in capsys.readouterr().err
    monkeypatch.setenv("FORESPLAT_MAX_MEMORY_GB", "0.000001")
    assert main(["render", "--synthetic-seed", "1", "--out", "/tmp/unused-render-dir", "--width", "64"]) == 2
    assert "above the limit" in capsys.readouterr().err


# ---- defect 5: memory limits ---------------------------------------------------------------------
def test_memory_limit(monkeypatch):
    from foresplat.limits import check_memory, memory_limit_bytes, refine_bytes

    monkeypatch.delenv("FORESPLAT_MAX_MEMORY_GB", raising=False)
    assert memory_limit_bytes() > 0
    with pytest.raises(MemoryLimitError, match=r"--max-memory-gb"):
        check_memory(refine_bytes(16, 100_000, 100_000, 10_000), "refine at 100000 px")
    monkeypatch.setenv("FORESPLAT_MAX_MEMORY_GB", "1e9")
    check_memory(refine_bytes(16, 100_000, 100_000, 10_000), "refine at 100000 px")


# ---- defect 6: value validation ------------------------------------------------------------------
def test_refine_and_train_configs_validate_values():
    from foresplat.refine import RefineConfig
    from foresplat.train import train_preset

    for bad in (dict(lr_means=1e30), dict(lr_opacity=float("nan")), dict(lr_sh_dc=-1.0), dict(eps=float("inf")),
                dict(background=(2.0, 0.0, 0.0))):
        with pytest.raises(ValueError, match="RefineConfig"):
            RefineConfig(**bad).validate()
    for bad in (dict(lr=1e30), dict(lr=float("nan")), dict(grad_clip=float("inf")), dict(weight_decay=float("nan"))):
        with pytest.raises(ValueError, match="TrainConfig"):
            train_preset("tiny", **bad)


def test_ply_values_and_declared_sizes(tmp_path):
    from foresplat.io.ply import check_gaussian_values

    g = _gaussians()
    write_ply(tmp_path / "ok.ply", g)
    check_gaussian_values(read_ply(tmp_path / "ok.ply"), "ok.ply")
    big = g.map(lambda t: t.clone())
    big.log_scales[3] = 80.0
    write_ply(tmp_path / "big.ply", big)
    with pytest.raises(ValueError, match=r"big.ply: log-scales .* up to 80"):
        check_gaussian_values(read_ply(tmp_path / "big.ply"), "big.ply")
    write_ply(tmp_path / "empty.ply", g.select(torch.zeros(g.num, dtype=torch.bool)))
    with pytest.raises(ValueError, match="0 Gaussians"):
        check_gaussian_values(read_ply(tmp_path / "empty.ply"), "empty.ply")
    far = g.map(lambda t: t.clone())
    far.means[0, 0] = 2.5e30
    with pytest.raises(ValueError, match="means"):
        check_gaussian_values(far, "far")
    (tmp_path / "huge.ply").write_text("ply\nformat ascii 1.0\nelement vertex 2000000000\nproperty float x\n"
                                       "end_header\n1\n")
    with pytest.raises(ValueError, match="declares 2000000000 'vertex' records"):
        read_ply(tmp_path / "huge.ply")
    data = (tmp_path / "ok.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[:-7])
    with pytest.raises(ValueError, match="truncated"):
        read_ply(tmp_path / "cut.ply")


def test_refiner_stops_on_a_non_finite_loss():
    from foresplat.data.synthetic import SyntheticConfig, generate_scene
    from foresplat.refine import RefineConfig, refine

    scene = generate_scene(1, SyntheticConfig(width=16, height=16, num_views=4, supersample=1, shadow_samples=1))
    g = _gaussians(50)
    g.sh[:] = float("inf")  # bypass the checks on purpose: what a diverged state looks like
    with pytest.raises((FloatingPointError, ValueError), match="non-finite|NaN|inf"):
        refine(g, scene, RefineConfig(steps=2, backend="reference"))


# ---- defect 8: training signals and --resume auto ------------------------------------------------
def _tiny(out: Path, **kw):
    import importlib.util

    from foresplat.train import train_preset

    backend = "auto" if importlib.util.find_spec("foresplat.render.cpu") else "reference"
    return train_preset("tiny", out_dir=str(out), backend=backend, progress=False, val_scenes=0, **kw)


def test_sigint_during_training_saves_a_checkpoint_and_resume_auto_skips_a_corrupt_one(tmp_path, monkeypatch):
    from foresplat.train import train
    from foresplat.train import loop as loop_mod
    from foresplat.train.state import list_checkpoints

    out = tmp_path / "run"
    real_step = loop_mod.train_step
    calls = []

    def step_then_signal(*args, **kwargs):
        stats = real_step(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:  # a real SIGINT in the middle of the run (handled after this iteration)
            os.kill(os.getpid(), signal.SIGINT)
        return stats

    monkeypatch.setattr(loop_mod, "train_step", step_then_signal)
    with pytest.raises(TrainingInterrupted, match="after iteration 3 of 8") as info:
        train(_tiny(out, iterations=8, ckpt_interval=2))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert [s for s, _ in list_checkpoints(out)] == [2, 3] and Path(str(info.value.checkpoint) + ".json").is_file()
    monkeypatch.setattr(loop_mod, "train_step", real_step)
    # corrupt the newest checkpoint: --resume auto falls back to step 2 and says so
    (out / "checkpoints" / "step_0000003.safetensors").write_bytes(b"garbage")
    train(_tiny(out, iterations=8, ckpt_interval=2, resume="auto"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == 2
    # every checkpoint corrupt: a clear error, not a silent fresh start
    for p in (out / "checkpoints").glob("*.safetensors"):
        p.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="none of the .* checkpoint"):
        train(_tiny(out, iterations=8, ckpt_interval=2, resume="auto"))


# ---- defect 9: demo ownership --------------------------------------------------------------------
def test_demo_deletes_only_what_it_recorded(tmp_path):
    from foresplat.commands.demo import DemoCommand, _claim, _prepare_run_dir

    cmd = DemoCommand(quick=True, out=tmp_path)
    run = tmp_path / "quick"
    (run / "base").mkdir(parents=True)
    (run / "base" / "precious.txt").write_text("mine")
    (run / "demo.json").write_text(json.dumps({"status": "done"}))  # any demo.json is no proof
    with pytest.raises(FileExistsError, match="no record"):
        _prepare_run_dir(cmd)
    assert (run / "base" / "precious.txt").is_file()
    # a genuine record that lists vanilla only: vanilla goes, base stays and cannot be claimed
    (run / "vanilla").mkdir()
    (run / "notes").mkdir()
    (run / "demo.json").write_text(json.dumps({"written_by": "foresplat demo", "written": ["vanilla", "notes", ".."]}))
    assert _prepare_run_dir(cmd) == run
    assert _listing(run) == ["base", "demo.json", "notes"]
    with pytest.raises(FileExistsError, match="was not written by `foresplat demo`"):
        _claim(run, "base")
    assert _claim(run, "metagrad") == run / "metagrad"
    assert json.loads((run / "demo.json").read_text())["written"] == ["metagrad"]


def test_user_error_types_are_value_errors():
    assert issubclass(UserError, ValueError) and issubclass(OutputPathError, UserError)
    assert issubclass(MemoryLimitError, UserError)
