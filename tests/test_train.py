"""Training tests (tiny preset: edge-t, 32x32, 2+2 views, a few iterations): learning, exact resume,
torchrun DDP, head-only fine-tuning, configs, and the train / predict commands."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from foresplat.io import load_checkpoint, read_ply
from foresplat.models import Predictor, PredictorConfig
from foresplat.train import lr_at, mix_seed, sample_split, train, train_preset
from foresplat.train.state import list_checkpoints

# the native cpu rasterizer when this build has it, else the pure-PyTorch reference
BACKEND = "auto" if importlib.util.find_spec("foresplat.render.cpu") else "reference"


def tiny(out_dir: Path, **overrides):
    return train_preset("tiny", out_dir=str(out_dir), backend=BACKEND, progress=False, **overrides)


def weights(stem: Path) -> dict[str, torch.Tensor]:
    state, _ = load_checkpoint(stem)
    return {k: v for k, v in state.items() if "/" not in k}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny run long enough to learn something: 24 iterations, held-out loss before and after."""
    out = tmp_path_factory.mktemp("trained")
    train(tiny(out, iterations=24, ckpt_interval=0, log_interval=4, val_scenes=3))
    return out


def test_training_lowers_heldout_target_loss(trained):
    summary = json.loads((trained / "summary.json").read_text())
    before, after = summary["val_first"]["val_mse"], summary["val_last"]["val_mse"]
    assert after < 0.8 * before, f"held-out target MSE {before:.4f} -> {after:.4f}"
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    iters = [r["iteration"] for r in lines if "loss" in r]
    assert iters == [4, 8, 12, 16, 20, 24]
    assert all(math.isfinite(r["loss"]) and "rule/zero_step_loss" in r and "lr" in r for r in lines if "loss" in r)
    cfg = (trained / "config.yaml").read_text()
    assert "rule:" in cfg and "name: vanilla" in cfg and "!!python" not in cfg
    # the final model reloads as a predictor; so does a training checkpoint (optimizer state ignored)
    a = Predictor.from_checkpoint(trained / "model").state_dict()
    b = Predictor.from_checkpoint(trained / "checkpoints" / "step_0000024").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert summary["ranks_in_sync"] and summary["world_size"] == 1


def test_resume_reaches_bit_identical_weights(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny(full, iterations=4, ckpt_interval=2, val_scenes=0))
    assert [s for s, _ in list_checkpoints(full)] == [2, 4]
    # "kill" after step 2: keep only what the run had written by then, then resume automatically
    shutil.copytree(full / "checkpoints", part / "checkpoints")
    for p in (part / "checkpoints").glob("step_0000004.*"):
        p.unlink()
    lines = (full / "metrics.jsonl").read_text().splitlines()
    (part / "metrics.jsonl").write_text("\n".join(lines) + "\n")  # lines the killed run may have left
    train(tiny(part, iterations=4, ckpt_interval=2, val_scenes=0, resume="auto"))
    a, b = weights(full / "model"), weights(part / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert [(r["iteration"], r["loss"]) for r in la] == [(r["iteration"], r["loss"]) for r in lb]
    assert json.loads((part / "summary.json").read_text())["resumed_from"] == 2
    # and a different seed really gives different weights (the comparison above can fail)
    other = tmp_path / "other"
    train(tiny(other, iterations=2, ckpt_interval=0, val_scenes=0, seed=1))
    c = weights(other / "model")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_head_only_finetuning_keeps_backbone_bit_identical(trained, tmp_path):
    init = weights(trained / "model")
    out = tmp_path / "head"
    train(tiny(out, iterations=2, val_scenes=0, init_checkpoint=str(trained / "model"), train_backbone=False))
    after = weights(out / "model")
    backbone = [k for k in init if k.startswith("backbone.")]
    head = [k for k in init if k.startswith("head.")]
    assert backbone and head
    assert all(torch.equal(init[k], after[k]) for k in backbone)
    assert not all(torch.equal(init[k], after[k]) for k in head)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trainable_parameters"] == sum(init[k].numel() for k in head)


def test_head_outputs_restrict_what_the_finetune_changes(trained, tmp_path):
    from foresplat.data.synthetic import SyntheticConfig, generate_scene

    init = weights(trained / "model")
    out = tmp_path / "opacity"
    train(tiny(out, iterations=2, val_scenes=0, init_checkpoint=str(trained / "model"), train_backbone=False,
               head_outputs=("opacity",)))
    after = weights(out / "model")
    moved = sorted(k for k in init if not torch.equal(init[k], after[k]))
    assert moved and set(moved) <= {"head.out.weight", "head.out.bias"}  # decay and the body left alone
    rows = Predictor.from_checkpoint(trained / "model").head.output_rows(("opacity",))
    assert rows.sum() == 1
    for k in moved:  # only the opacity channel's row
        assert torch.equal(init[k][~rows], after[k][~rows]) and not torch.equal(init[k][rows], after[k][rows])
    scene = generate_scene(5, SyntheticConfig(width=32, height=32, num_views=2))
    with torch.no_grad():
        g0 = Predictor.from_checkpoint(trained / "model").predict(scene)
        g1 = Predictor.from_checkpoint(out / "model").predict(scene)
    for name in ("means", "quats", "log_scales", "sh"):
        assert torch.equal(getattr(g0, name), getattr(g1, name)), name
    assert not torch.equal(g0.opacity_logits, g1.opacity_logits)
    summary = json.loads((out / "summary.json").read_text())  # one row of weights and its bias
    assert summary["trainable_parameters"] == init["head.out.weight"][0].numel() + 1
    with pytest.raises(ValueError, match="head_outputs"):
        tiny(tmp_path / "x", head_outputs=("opacity",))  # the backbone trains: no restriction possible
    with pytest.raises(ValueError, match="head_outputs"):
        tiny(tmp_path / "x", train_backbone=False, head_outputs=("depth",))


def test_torchrun_two_processes_hold_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "foresplat.cli", "train", "--preset", "tiny", "--iterations", "3", "--out", str(out),
           "--backend", BACKEND, "--val-scenes", "0", "--no-progress", "--synthetic-pool", "0"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and len(summary["ranks"]) == 2
    r0, r1 = summary["ranks"]
    assert r0["weights_sha256"] == r1["weights_sha256"] and summary["ranks_in_sync"]
    assert r0["first_scenes"] != r1["first_scenes"], "ranks must train on different scenes"


def test_scene_sampling_is_a_pure_function_of_seed_iteration_rank():
    cfg = train_preset("tiny", synthetic_pool=0)
    a, b = sample_split(cfg, 5, 0, 0), sample_split(cfg, 5, 0, 0)
    assert a.context.name == b.context.name and torch.equal(a.context.images, b.context.images)
    assert a.context_indices == b.context_indices
    names = {sample_split(cfg, 5, r, 0).context.name for r in range(3)} | {sample_split(cfg, 6, 0, 0).context.name}
    assert len(names) == 4
    assert mix_seed(0, 1, 2) == mix_seed(0, 1, 2) != mix_seed(0, 2, 1)


def test_dataset_scenes_are_mixed_in_as_random_crops(shared_data):
    cfg = train_preset("tiny", datasets=(str(shared_data / "llff_fern"),), dataset_weight=1.0, dataset_downscale=8)
    s = sample_split(cfg, 0, 0, 0)
    assert s.context.images.shape == (2, 32, 32, 3) and s.target.images.shape == (2, 32, 32, 3)
    s.context.validate()
    assert s.context.cameras.width == 32 and len(set(s.context_indices + s.target_indices)) == 4
    assert not torch.equal(s.context.images, sample_split(cfg, 1, 0, 0).context.images)


def test_lr_schedule_warmup_then_cosine():
    lrs = [lr_at(i, 1.0, 100, 10, 0.1) for i in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1)


def test_bad_configs_raise_clear_errors(tmp_path, trained):
    with pytest.raises(ValueError, match="unknown preset"):
        train_preset("huge")
    with pytest.raises(ValueError, match="num_context"):
        train_preset("tiny", num_context=0)
    with pytest.raises(ValueError, match="synthetic.num_views"):
        train_preset("tiny", num_context=4, num_target=2)
    with pytest.raises(ValueError, match="multiples of 8"):
        train(tiny(tmp_path / "odd", width=36, height=36))
    stale = tmp_path / "exists" / "checkpoints"
    stale.mkdir(parents=True)
    (stale / "step_0000001.json").write_text("{}")
    (stale / "step_0000001.safetensors").write_bytes(b"")
    with pytest.raises(FileExistsError, match="resume"):  # a fresh run would mix with the old one
        train(tiny(tmp_path / "exists"))
    # resuming a run with another architecture, or from a model-only checkpoint
    with pytest.raises(ValueError, match="predictor config differs"):
        train(tiny(tmp_path / "r1", model=PredictorConfig.preset("edge-s"), width=32, height=32,
                   resume=str(trained / "model")))
    with pytest.raises(ValueError, match="not a training checkpoint"):
        train(tiny(tmp_path / "r2", resume=str(trained / "model")))
    meta = json.loads((trained / "model.json").read_text())
    (tmp_path / "old.safetensors").write_bytes((trained / "model.safetensors").read_bytes())
    from foresplat.io.checkpoint import meta_digest

    old = {**meta, "predictor_schema": 0}
    (tmp_path / "old.json").write_text(json.dumps({**old, "meta_sha256": meta_digest(old)}))
    with pytest.raises(ValueError, match="schema 0"):
        train(tiny(tmp_path / "r3", init_checkpoint=str(tmp_path / "old")))


def test_train_and_predict_commands(trained, tmp_path, capsys):
    from foresplat.cli import main

    assert main(["train", "--preset", "tiny", "--model.backbone.num-depths", "1"]) == 2
    assert "EdgeConfig.num_depths" in capsys.readouterr().err
    out = tmp_path / "cli"
    assert main(["train", "--preset", "tiny", "--rule", "vanilla", "--iterations", "1", "--out", str(out),
                 "--backend", BACKEND, "--val-scenes", "0", "--no-progress", "--rule.ssim-weight", "0.0",
                 "--tensorboard"]) == 0
    assert "ssim_weight: 0.0" in (out / "config.yaml").read_text()
    assert list((out / "tb").glob("events.out.tfevents.*"))
    ply = tmp_path / "g0.ply"
    assert main(["predict", "synthetic:1000005", "--ckpt", str(trained / "model"), "--out", str(ply),
                 "--num-context", "3", "--num-target", "1", "--width", "32", "--height", "32"]) == 0
    g = read_ply(ply)
    assert g.num == 3 * 16 * 16 and g.sh_degree == 1
    info = json.loads(ply.with_suffix(".json").read_text())
    assert len(info["context_indices"]) == 3 and len(info["target_indices"]) == 1
    capsys.readouterr()
    assert main(["predict", "synthetic:1", "--ckpt", str(tmp_path / "missing"), "--out", str(ply)]) == 2
    err = capsys.readouterr().err  # one line naming the missing file, no traceback
    assert err.startswith("foresplat predict: error: ") and "missing.json" in err and err.count("\n") == 1


def test_predicted_gaussians_refine_better_than_random_init(trained):
    """Equal refinement steps and Gaussian counts: refining the prediction beats refining a random
    init on the held-out target views (the predict-then-refine premise)."""
    from foresplat.refine import RefineConfig, init_random, refine, scene_bounds, view_metrics
    from foresplat.train import validation_splits

    model = Predictor.from_checkpoint(trained / "model")
    cfg = RefineConfig(steps=30, backend=BACKEND)
    pred, rand = [], []
    for split in validation_splits(tiny(trained, val_scenes=2)):
        g0 = model.predict(split.context)
        gr = init_random(scene_bounds(split.context), g0.num, seed=0, sh_degree=g0.sh_degree)
        for g, acc in ((g0, pred), (gr, rand)):
            out = refine(g, split.context, cfg).gaussians
            acc.append(sum(view_metrics(out, split.target, backend=BACKEND)["psnr"]) / split.target.num_views)
    assert sum(pred) / len(pred) > sum(rand) / len(rand) + 2.0, (pred, rand)


def test_real_preset_trains_on_a_real_scene_folder(shared_data, tmp_path):
    """The `real` preset's data path end to end, shrunk: a folder of scenes stands for its training
    scenes (never the evaluation ones), crops are normalised, colour-jittered, and two iterations run."""
    from foresplat.data.catalog import HELDOUT_REAL_SCENES, VISIBLE_EVAL_SCENES
    from foresplat.models import PredictorConfig
    from foresplat.train.data import _expand_datasets

    scenes = _expand_datasets((str(shared_data),))
    names = {Path(p).name for p in scenes}
    assert names and not names & (set(VISIBLE_EVAL_SCENES) | set(HELDOUT_REAL_SCENES))
    cfg = train_preset("real", model=PredictorConfig.preset("edge-t"), datasets=(str(shared_data / "real" / "capture_table"),),
                       dataset_weight=1.0, batch_size=1, num_context=3, num_target=1, width=32, height=24,
                       iterations=2, warmup=1, val_scenes=0, ckpt_interval=0, out_dir=str(tmp_path / "r"),
                       backend=BACKEND, progress=False)
    s = sample_split(cfg, 0, 0, 0)
    assert s.context.images.shape == (3, 24, 32, 3)
    centres = s.context.cameras.centers()
    assert torch.allclose(centres.mean(0), torch.zeros(3), atol=1e-4)  # the normalised frame
    assert s.context.near * s.context.far == pytest.approx(1.0, rel=1e-4)
    final = train(cfg)
    assert final.with_suffix(".safetensors").is_file()
