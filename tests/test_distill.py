"""Distillation (foresplat.train.distill, foresplat distill): student configs, the rule, a resumable run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from foresplat.data.scene import split_views
from foresplat.data.synthetic import generate_scene
from foresplat.models import Predictor, PredictorConfig
from foresplat.train import train_preset
from foresplat.train.distill import (DistillConfig, DistillRule, DistillWeights, camera_depths, distill,
                                     student_config)


def _split(seed: int = 5):
    cfg = train_preset("tiny").synthetic
    return split_views(generate_scene(seed, cfg), 2, 2, "first")


def test_student_configs_respect_the_parameter_budget():
    for name in ("edge-t", "edge-s"):
        teacher = PredictorConfig.preset(name)
        n_t = Predictor(teacher).num_parameters()
        half = student_config(teacher, "half")
        n_s = Predictor(half).num_parameters()
        assert 0.3 * n_t < n_s <= 0.5 * n_t
        assert half.backbone.prediction_stride == teacher.backbone.prediction_stride
    with pytest.raises(ValueError, match="student: edge-s has .* more than 50%"):
        student_config(PredictorConfig.preset("edge-t"), "edge-s")
    with pytest.raises(ValueError, match="expected 'half' or one of"):
        student_config(PredictorConfig.preset("edge-t"), "huge")
    with pytest.raises(ValueError, match="DistillWeights.gt: expected >= 0"):
        DistillWeights(gt=-1.0).validate()


def test_camera_depths_match_projection():
    split = _split()
    torch.manual_seed(0)
    g = Predictor(PredictorConfig.preset("edge-t")).eval().predict(split.context)
    z = camera_depths(g, split.context.cameras.viewmats)  # [V, M]
    V = split.context.num_views
    mu = g.means.reshape(V, -1, 3)
    ref = torch.stack([(torch.cat([mu[v], torch.ones_like(mu[v][:, :1])], -1) @ split.context.cameras.viewmats[v].T)[:, 2]
                       for v in range(V)])
    assert torch.allclose(z, ref, atol=1e-5)


def test_rule_is_zero_for_a_copy_of_the_teacher_and_trains_a_different_student():
    split = _split()
    torch.manual_seed(0)
    teacher = Predictor(PredictorConfig.preset("edge-t"))
    copy = Predictor(teacher.config)
    copy.load_state_dict(teacher.state_dict())
    rule = DistillRule(teacher, DistillWeights(gt=0.0))
    g = torch.Generator().manual_seed(0)
    out = rule(copy.predict(split.context), split, g)
    assert float(out.loss) < 1e-5 and set(out.logs) >= {"distill_depth", "distill_render", "distill_colour"}

    student = Predictor(student_config(teacher.config, "half"))
    batch = split.context
    g0 = student(batch.images[None], batch.cameras.viewmats[None], batch.cameras.Ks[None],
                 torch.tensor([batch.near]), torch.tensor([batch.far]))[0]
    out = rule(g0, split, g)
    assert float(out.loss.detach()) > 1e-3
    out.loss.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and sum(float(gr.abs().sum()) for gr in grads) > 0
    assert all(p.grad is None for p in teacher.parameters())


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    """A tiny predictor trained by foresplat.train itself (8 iterations of the tiny preset)."""
    from foresplat.train import train

    d = tmp_path_factory.mktemp("teacher")
    return train(train_preset("tiny", out_dir=str(d), val_scenes=0, progress=False))


@pytest.mark.slow
def test_distill_run_logs_resumes_exactly_and_finetunes(teacher_ckpt, tmp_path):
    from foresplat.io import load_checkpoint
    from foresplat.train.state import checkpoint_path

    tc = train_preset("tiny", iterations=6, ckpt_interval=3, val_scenes=1, progress=False)
    cfg = DistillConfig(teacher=str(teacher_ckpt), student="half", out_dir=str(tmp_path / "a"), train=tc,
                        finetune_iterations=2, metagrad_k=(2, 4, 2))
    res = distill(cfg)
    info = json.loads((tmp_path / "a" / "distill.json").read_text())
    assert info["parameter_ratio"] <= 0.5 and info["student_parameters"] == res.student_parameters
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert any("rule/distill_render" in x for x in lines) and any("val_psnr" in k for x in lines for k in x)
    assert Predictor.from_checkpoint(res.student).num_parameters() == res.student_parameters
    for head in (res.head_vanilla, res.head_metagrad):  # head-only fine-tunes of the student
        ft = Predictor.from_checkpoint(head)
        assert ft.config == Predictor.from_checkpoint(res.student).config

    # kill after step 3: drop the later files, resume="auto" must reproduce the same final weights
    b = tmp_path / "b"
    distill(replace(cfg, out_dir=str(b), finetune_iterations=0))
    for stem in (checkpoint_path(b, 6), b / "model"):
        for suffix in (".json", ".safetensors"):
            stem.with_suffix(suffix).unlink()
    distill(replace(cfg, out_dir=str(b), finetune_iterations=0, train=replace(tc, resume="auto")))
    w_a, _ = load_checkpoint(res.student)
    w_b, _ = load_checkpoint(b / "model")
    assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)


def test_cli_parses_preset_overrides_and_requires_a_teacher():
    from foresplat.commands.distill import parse

    cfg = parse(["--teacher", "t/model", "--preset", "tiny", "--train.iterations", "3", "--out", "d",
                 "--weights.gt", "0", "--resume", "auto"])
    assert (cfg.teacher, cfg.out_dir, cfg.train.iterations, cfg.weights.gt, cfg.train.resume) == \
        ("t/model", "d", 3, 0.0, "auto")
    assert cfg.train.width == train_preset("tiny").width
    with pytest.raises(ValueError, match="--teacher"):
        parse(["--out", "d"])


def test_adapter_teacher_and_render_only_distillation(tmp_path):
    from foresplat.models.adapter import load_feedforward
    from foresplat.models.head import HeadConfig

    split = _split()
    torch.manual_seed(1)
    Predictor(PredictorConfig.preset("edge-t")).save(tmp_path / "t")
    teacher = load_feedforward(f"edge:{tmp_path / 't'}")  # an adapter model, not a Predictor
    assert not isinstance(teacher, Predictor)
    cfg = student_config(None, "edge-t", 1.0, teacher_parameters=teacher.num_parameters())
    with pytest.raises(ValueError, match="'half' narrows a foresplat predictor"):
        student_config(None, "half", 0.5, teacher_parameters=teacher.num_parameters())
    c = split.context
    args = (c.images[None], c.cameras.viewmats[None], c.cameras.Ks[None], torch.tensor([c.near]), torch.tensor([c.far]))
    out = DistillRule(teacher)(Predictor(cfg)(*args)[0], split, torch.Generator())
    assert torch.isfinite(out.loss) and "distill_depth" in out.logs

    # SH degree 0 student vs degree 1 teacher: per-Gaussian terms refuse, render-only distillation works
    sh0 = Predictor(PredictorConfig(cfg.backbone, HeadConfig(sh_degree=0, hidden_channels=8)))
    with pytest.raises(ValueError, match="set --weights.depth/opacity/scale/colour 0"):
        DistillRule(teacher)(sh0(*args)[0], split, torch.Generator())
    render_only = DistillWeights(depth=0, opacity=0, scale=0, colour=0)
    out = DistillRule(teacher, render_only)(sh0(*args)[0], split, torch.Generator())
    assert set(k for k in out.logs if k.startswith("distill_")) == {"distill_render", "distill_gt"}
    out.loss.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in sh0.parameters())
