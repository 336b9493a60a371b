"""TrainConfig.rule_workers: the batch's scenes in threads give the same gradients and weights as one after the other."""

from __future__ import annotations

import json

import pytest
import torch

from foresplat.data.scene import split_views
from foresplat.data.synthetic import SyntheticConfig, generate_scene
from foresplat.meta import RuleConfig, build_rule
from foresplat.refine import RefineConfig, init_from_points
from foresplat.train import train, train_preset
from foresplat.train.loop import run_rule


def _scene_g0(seed: int):
    scene = generate_scene(seed, SyntheticConfig(width=24, height=24, num_views=6, supersample=1, shadow_samples=1))
    split = split_views(scene, num_context=4, num_target=2)
    idx = torch.randperm(scene.points.shape[0], generator=torch.Generator().manual_seed(seed))[:300]
    return split, init_from_points(scene.points[idx], scene.point_colors[idx], sh_degree=1)


@pytest.mark.parametrize("name", ["metagrad", "reptile"])
def test_threaded_rule_gives_the_same_anchor_gradients(name):
    rule = build_rule(RuleConfig(name=name, k_min=6, k_max=9, stride=3, refine=RefineConfig(backend="cpu"),
                                 backend="cpu"))
    data = [_scene_g0(s) for s in (0, 1, 2)]

    def grads(workers: int):
        g0s = [g.clone().requires_grad_(True) for _, g in data]
        gens = [torch.Generator().manual_seed(10 + i) for i in range(len(data))]
        outs = run_rule(rule, g0s, [s for s, _ in data], gens, workers)
        torch.stack([o.loss for o in outs]).sum().backward()
        return [t.grad for g in g0s for t in g.tensors()], [o.logs for o in outs]

    seq, seq_logs = grads(1)
    par, par_logs = grads(3)
    assert all(torch.equal(a, b) for a, b in zip(seq, par))
    assert any(bool(a.abs().sum() > 0) for a in seq)  # the rule produced a gradient at all
    drop = ("time_inner", "time_anchor", "time_zero_step")
    assert [{k: v for k, v in d.items() if k not in drop} for d in seq_logs] == \
        [{k: v for k, v in d.items() if k not in drop} for d in par_logs]


def test_training_with_rule_workers_is_bit_identical(tmp_path):
    def run(workers: int):
        cfg = train_preset("tiny", rule=RuleConfig(name="metagrad", k_min=2, k_max=4, stride=2), batch_size=2,
                           iterations=2, val_scenes=0, ckpt_interval=0, progress=False, rule_workers=workers,
                           out_dir=str(tmp_path / f"w{workers}"))
        from foresplat.models import Predictor

        return Predictor.from_checkpoint(train(cfg)).state_dict()

    a, b = run(1), run(2)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="TrainConfig.rule_workers"):
        train_preset("tiny", rule_workers=0)
    assert json.loads((tmp_path / "w2" / "summary.json").read_text())["iterations"] == 2
