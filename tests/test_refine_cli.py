"""`foresplat refine`: outputs on a generated scene, Ctrl-C handling, init specs."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from foresplat.commands import refine as refine_cmd
from foresplat.data.spec import load_scene_spec
from foresplat.io import read_ply, write_ply
from foresplat.refine import Refiner, initialize, scene_background
from foresplat.refine.init import carve_points

ARGS = ["synthetic:5", "--steps", "6", "--eval-steps", "0", "3", "--width", "16", "--backend", "reference",
        "--num-context", "6", "--num-target", "2", "--no-progress"]


def test_cli_writes_ply_and_metrics(tmp_path):
    out = tmp_path / "s5.ply"
    assert refine_cmd.main(ARGS + ["--out", str(out), "--init", "random", "--num-random", "300"]) == 0
    g = read_ply(out)
    assert g.num == 300 and torch.isfinite(g.means).all()
    m = json.loads(out.with_suffix(".json").read_text())
    assert [e["step"] for e in m["eval"]] == [0, 3, 6]
    assert m["steps_done"] == 6 and not m["interrupted"] and len(m["losses"]) == 6
    assert (m["width"], m["height"]) == (16, 16) and len(m["target_indices"]) == 2
    assert all(len(e["psnr_per_view"]) == 2 and e["psnr"] > 5 for e in m["eval"])
    assert m["config"]["steps"] == 6 and m["config"]["backend"] == "reference"


def test_cli_ctrl_c_leaves_valid_outputs(tmp_path, monkeypatch):
    real_step = Refiner.step

    def step(self, g, state, k, gen, *a, **kw):
        if k == 3:
            raise KeyboardInterrupt
        return real_step(self, g, state, k, gen, *a, **kw)

    monkeypatch.setattr(Refiner, "step", step)
    out = tmp_path / "int.ply"
    assert refine_cmd.main(ARGS + ["--out", str(out), "--init", "points"]) == 130
    m = json.loads(out.with_suffix(".json").read_text())
    assert m["interrupted"] and m["steps_done"] == 3 and [e["step"] for e in m["eval"]] == [0, 3]
    g = read_ply(out)
    assert g.num == m["num_gaussians"] and all(torch.isfinite(t).all() for t in g.tensors())
    assert not list(tmp_path.glob(".tmp*"))


def test_cli_sigterm_writes_the_state_after_the_running_step(tmp_path, monkeypatch, capsys):
    import os
    import signal

    real_step = Refiner.step

    def step(self, g, state, k, gen, *a, **kw):
        if k == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # handled after this step: the loop stops after step 3
        return real_step(self, g, state, k, gen, *a, **kw)

    monkeypatch.setattr(Refiner, "step", step)
    previous = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "term.ply"
    assert refine_cmd.main(ARGS + ["--out", str(out), "--init", "points"]) == 130
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    m = json.loads(out.with_suffix(".json").read_text())
    assert m["interrupted"] and m["steps_done"] == 3 and len(m["losses"]) == 3
    assert read_ply(out).num == m["num_gaussians"]
    assert "SIGTERM: writing the current state" in capsys.readouterr().err


def test_cli_init_from_ply_and_errors(tmp_path):
    from foresplat.data.synthetic import SyntheticConfig, generate_scene

    scene = generate_scene(5, SyntheticConfig(width=16, height=16, num_views=4, supersample=1))
    g = initialize("random", scene, num_random=50)
    write_ply(tmp_path / "init.ply", g)
    back = initialize(f"ply:{tmp_path / 'init.ply'}", scene)
    torch.testing.assert_close(back.means, g.means)
    with pytest.raises(ValueError, match="ply:PATH"):
        initialize("ply:", scene)
    with pytest.raises(ValueError, match="expected points, random"):
        initialize("bogus", scene)
    no_points = scene.subset([0, 1])
    no_points.points = None
    no_points.masks = None
    with pytest.raises(ValueError, match="neither sparse points nor masks"):
        initialize("points", no_points)
    with pytest.raises(FileNotFoundError, match="no such file"):
        refine_cmd.main(["/nonexistent/scene", "--out", str(tmp_path / "x.ply")])


def test_carve_points_and_background_from_masks():
    """A masked scene whose masked-out pixels are white: hull points lie inside the masks."""
    from foresplat.data.synthetic import SyntheticConfig, generate_scene

    scene = generate_scene(7, SyntheticConfig(width=24, height=24, num_views=6, supersample=1))
    scene.images = torch.where(scene.masks.unsqueeze(-1) > 0.5, scene.images, torch.ones_like(scene.images))
    assert scene_background(scene) == pytest.approx((1.0, 1.0, 1.0))
    pts, cols = carve_points(scene, 200, seed=0)
    assert 0 < pts.shape[0] <= 200 and cols.shape == pts.shape
    uv, z = scene.cameras.project(pts)
    u, v = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    inside = (z > 0) & (u >= 0) & (u < 24) & (v >= 0) & (v < 24)
    m = scene.masks[torch.arange(6)[:, None].expand_as(u), v.clamp(0, 23), u.clamp(0, 23)]
    assert bool(((m > 0.5) | ~inside).all())
    noisy = scene.images.clone()
    noisy[:, :, :12] = torch.rand(6, 24, 12, 3, generator=torch.Generator().manual_seed(0))
    scene.images = noisy  # half of each view: the background is no longer uniform
    assert scene_background(scene) is None


def test_init_from_predictor_checkpoint(tmp_path):
    from foresplat.models import Predictor, PredictorConfig

    model = Predictor(PredictorConfig.preset("edge-t"))
    model.save(tmp_path / "pred", step=0)
    out = tmp_path / "from_ckpt.ply"
    # 20x20 views are not multiples of the predictor's divisor: the init resizes them for the prediction
    assert refine_cmd.main(ARGS[:-1] + ["--width", "20", "--out", str(out), "--init", f"ckpt:{tmp_path / 'pred'}",
                                        "--steps", "2", "--eval-steps", "0"]) == 0
    m = json.loads(out.with_suffix(".json").read_text())
    g = read_ply(out)
    assert g.num == m["num_gaussians"] > 0 and g.sh_degree == model.config.head.sh_degree
    # the filters of docs/REAL.md on the same prediction: the consistency check runs on the resized views
    filtered = tmp_path / "filtered.ply"
    assert refine_cmd.main(ARGS[:-1] + ["--width", "20", "--out", str(filtered), "--ckpt", str(tmp_path / "pred"),
                                        "--init", "predicted+foreground+consistent", "--steps", "2",
                                        "--eval-steps", "0"]) == 0
    assert 0 < json.loads(filtered.with_suffix(".json").read_text())["num_gaussians"] < g.num
    with pytest.raises(ValueError, match="give one initialisation"):
        refine_cmd.main(ARGS[:-1] + ["--out", str(tmp_path / "x.ply"), "--ckpt", str(tmp_path / "pred"),
                                     "--init", "random"])
    scene = load_scene_spec("synthetic:5", num_views=4).resized(32, 32)
    scene = replace(scene, images=torch.where(torch.arange(32)[:, None, None] < 12, 0.0, scene.images))
    from foresplat.models.filters import keep_foreground

    plain = initialize(f"ckpt:{tmp_path / 'pred'}", scene)
    fg = initialize(f"ckpt:{tmp_path / 'pred'}+foreground", scene)
    assert torch.equal(fg.means, keep_foreground(plain, None).means) and fg.num < plain.num
    with pytest.raises(FileNotFoundError):
        initialize(f"ckpt:{tmp_path / 'missing'}", load_scene_spec("synthetic:5", num_views=4))
