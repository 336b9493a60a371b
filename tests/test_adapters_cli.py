"""`foresplat train --model NAME --weights PATH` (head-only MetaGrad) and `foresplat predict --model ... --head ...`."""

from __future__ import annotations

import json

import torch

from foresplat.cli import main
from foresplat.io import load_checkpoint, read_ply
from foresplat.models import Predictor, PredictorConfig

RULE = ["--rule", "metagrad", "--rule.lam", "0.0", "--rule.k-min", "2", "--rule.k-max", "2", "--rule.stride", "2",
        "--backend", "reference"]


def test_train_model_finetunes_only_the_head_and_predict_uses_it(tmp_path, capsys):
    torch.manual_seed(0)
    p = Predictor(PredictorConfig.preset("edge-t"))
    p.save(tmp_path / "base")
    out = tmp_path / "ft"
    rc = main(["train", "--model", "edge", "--weights", str(tmp_path / "base"), "--preset", "tiny", *RULE,
               "--iterations", "2", "--lr", "0.01", "--out", str(out), "--device", "cpu"])
    assert rc == 0 and "head checkpoint:" in capsys.readouterr().out
    state, meta = load_checkpoint(out / "head", expected_kind="adapter_head")
    assert meta["model"] == "edge" and meta["iterations"] == 2
    assert meta["backbone_sha256_before"] == meta["backbone_sha256_after"]
    assert meta["heldout_before"]["val_psnr"] != meta["heldout_after"]["val_psnr"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["grad_norm"] > 0 for x in lines)
    head = p.head.state_dict()
    assert set(state) == set(head) and any(not torch.equal(state[k], head[k]) for k in head)

    scene = ["synthetic:3", "--num-context", "3", "--num-target", "1", "--width", "32", "--height", "32"]
    assert main(["predict", *scene, "--ckpt", str(tmp_path / "base"), "--out", str(tmp_path / "a.ply")]) == 0
    assert main(["predict", *scene, "--ckpt", str(tmp_path / "base"), "--consistent", "0.15",
                 "--out", str(tmp_path / "k.ply")]) == 0
    kept = json.loads((tmp_path / "k.json").read_text())
    assert kept["num_predicted"] == read_ply(tmp_path / "a.ply").num > kept["num_gaussians"]
    assert kept["num_gaussians"] == read_ply(tmp_path / "k.ply").num
    assert main(["predict", *scene, "--ckpt", str(tmp_path / "base"), "--foreground",
                 "--out", str(tmp_path / "f.ply")]) == 0
    assert json.loads((tmp_path / "f.json").read_text())["foreground"] is True
    assert main(["predict", *scene, "--ckpt", str(tmp_path / "base"), "--consistent", "0",
                 "--out", str(tmp_path / "z.ply")]) == 2
    assert "--consistent/--foreground: depth_consistent: need rel_tol > 0" in capsys.readouterr().err
    assert main(["predict", *scene, "--model", "edge", "--weights", str(tmp_path / "base"),
                 "--out", str(tmp_path / "b.ply")]) == 0
    assert main(["predict", *scene, "--model", "edge", "--weights", str(tmp_path / "base"), "--head",
                 str(out / "head"), "--out", str(tmp_path / "c.ply")]) == 0
    a, b, c = (read_ply(tmp_path / f"{n}.ply") for n in "abc")
    assert torch.allclose(a.means, b.means, atol=1e-5)  # the edge adapter is the predictor
    assert (a.means - c.means).abs().max() > 1e-3  # the fine-tuned head is used
    assert json.loads((tmp_path / "c.json").read_text())["head"] == str(out / "head")


def test_model_options_fail_with_one_line(tmp_path, capsys):
    assert main(["train", "--model", "anysplat", "--preset", "tiny"]) == 2
    assert "--weights PATH" in capsys.readouterr().err
    assert main(["train", "--weights", str(tmp_path), "--preset", "tiny"]) == 2
    assert "--model NAME" in capsys.readouterr().err
    assert main(["predict", "synthetic:3", "--model", "nope", "--weights", str(tmp_path), "--out",
                 str(tmp_path / "x.ply")]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["predict", "synthetic:3", "--weights", str(tmp_path), "--out", str(tmp_path / "x.ply")]) == 2
    assert "--model NAME" in capsys.readouterr().err


def test_refine_from_a_model_matches_refine_from_its_checkpoint(tmp_path):
    torch.manual_seed(1)
    Predictor(PredictorConfig.preset("edge-t")).save(tmp_path / "base")
    common = ["refine", "synthetic:2", "--steps", "2", "--eval-steps", "0", "2", "--num-context", "3",
              "--num-target", "1", "--width", "32", "--height", "32", "--no-progress"]
    assert main([*common, "--ckpt", str(tmp_path / "base"), "--out", str(tmp_path / "a.ply")]) == 0
    assert main([*common, "--model", "edge", "--weights", str(tmp_path / "base"),
                 "--out", str(tmp_path / "b.ply")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert b["init"] == "model:edge" and b["model"] == "edge" and b["num_gaussians"] == a["num_gaussians"]
    assert abs(a["eval"][0]["psnr"] - b["eval"][0]["psnr"]) < 1e-3  # the same G0 (step 0)
    assert main([*common, "--model", "edge", "--ckpt", str(tmp_path / "base"),
                 "--out", str(tmp_path / "c.ply")]) == 2


def test_eval_takes_registered_models_and_fine_tuned_heads(tmp_path):
    from foresplat.evaluate.protocol import EvalConfig, SceneSource, build_methods, evaluate
    from foresplat.models.adapter import load_feedforward
    from foresplat.models.adapters.edge import EdgeAdapter
    from foresplat.refine import RefineConfig
    from foresplat.train.config import train_preset
    from foresplat.train.data import synthetic_scene

    torch.manual_seed(2)
    p = Predictor(PredictorConfig.preset("edge-t"))
    p.save(tmp_path / "base")
    ft = EdgeAdapter(Predictor.from_checkpoint(tmp_path / "base"))
    with torch.no_grad():
        ft.head.out.bias.add_(0.3)  # a "fine-tuned" head
    ft.save_head(tmp_path / "head", {"weights": str(tmp_path / "base")})
    assert isinstance(load_feedforward(tmp_path / "base"), Predictor)
    assert isinstance(load_feedforward(f"edge:{tmp_path / 'base'}"), EdgeAdapter)
    assert torch.equal(load_feedforward(tmp_path / "head").head.out.bias, ft.head.out.bias)

    scene = synthetic_scene(5, train_preset("tiny").synthetic)
    methods = build_methods([f"pred={tmp_path / 'base'}", f"adapter=edge:{tmp_path / 'base'}",
                             f"ft={tmp_path / 'head'}"], [])
    config = EvalConfig(steps=(0, 1), budgets=(1e3,), num_context=2, num_target=2, save_ply=False,
                        refine=RefineConfig(backend="reference"))
    s = evaluate([SceneSource("s", "memory", lambda: scene)], methods, config, tmp_path / "eval",
                 progress=False).report.scenes[0]
    names = ("pred", "adapter", "ft")
    assert all(s.method(n).ok for n in names), [s.method(n).error for n in names]
    assert abs(s.method("pred").steps[0].psnr - s.method("adapter").steps[0].psnr) < 1e-3
    assert abs(s.method("pred").steps[0].psnr - s.method("ft").steps[0].psnr) > 1e-3
