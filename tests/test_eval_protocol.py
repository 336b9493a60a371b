"""The evaluation protocol end to end on tiny scenes: outputs, numbers, budgets, errors, LPIPS, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from foresplat.cameras import Cameras, look_at
from foresplat.data.scene import Scene
from foresplat.evaluate import budget as budget_mod
from foresplat.evaluate.budget import BudgetRecorder
from foresplat.evaluate.protocol import EvalConfig, MethodSpec, SceneSource, build_methods, evaluate, prepare_scene
from foresplat.gaussians import Gaussians
from foresplat.refine import RefineConfig

SIZE = 16


def _cameras(n: int, size: int = SIZE) -> Cameras:
    ang = torch.linspace(0, 2 * math.pi, n + 1)[:-1]
    eye = torch.stack([3 * torch.cos(ang), 3 * torch.sin(ang), 0.8 + 0.2 * torch.sin(3 * ang)], -1)
    view = look_at(eye, torch.zeros(n, 3), torch.tensor([0.0, 0.0, 1.0]))
    f = size * 1.2
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]]).expand(n, 3, 3).clone()
    return Cameras(view, K, size, size)


def _truth(n: int = 60, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 1.6
    return Gaussians.from_activated(means, torch.tensor([1.0, 0, 0, 0]).expand(n, 4).clone(),
                                    torch.full((n, 3), 0.15), torch.full((n,), 0.8),
                                    torch.rand(n, 3, generator=g))


def tiny_scene(name: str = "tiny", views: int = 6, seed: int = 0) -> Scene:
    """Views of a known Gaussian cloud rendered by the reference rasterizer; points = its centres."""
    from foresplat.render import render

    truth = _truth(seed=seed)
    cams = _cameras(views)
    with torch.no_grad():
        images = render(truth, cams, backend="reference").colors.clamp(0, 1)
    pg = torch.Generator().manual_seed(seed + 1)
    points = truth.means + 0.05 * torch.randn(truth.num, 3, generator=pg)
    return Scene(images.float(), cams, name=name, points=points, point_colors=truth.sh[:, 0] * 0.2821 + 0.5,
                 near=0.5, far=10.0).validate()


def _config(**kw) -> EvalConfig:
    base = dict(steps=(0, 2, 4), budgets=(1e-6, 1e3), num_context=4, num_target=2,
                refine=RefineConfig(backend="reference"), random_count=40)
    base.update(kw)
    return EvalConfig(**base)


@pytest.fixture(scope="module")
def scene() -> Scene:
    return tiny_scene()


def test_evaluate_writes_every_output_and_sane_numbers(tmp_path, scene):
    def broken():
        raise ValueError("cannot parse cameras.json")

    sources = [SceneSource("tiny", "memory", lambda: scene), SceneSource("broken", "memory", broken)]
    out = evaluate(sources, build_methods([], ["points", "random"]), _config(), tmp_path, progress=False)
    rep = out.report
    assert [s.scene for s in rep.ok_scenes()] == ["tiny"]
    assert rep.scenes[1].error == "ValueError: cannot parse cameras.json"
    for name in ("results.md", "results.csv", "results.json", "psnr_vs_steps.png", "psnr_vs_seconds.png",
                 "eval_config.json", "grids/tiny.png", "ply/tiny/points.ply", "ply/tiny/random.ply"):
        assert (tmp_path / name).is_file(), name
    tiny = rep.scenes[0]
    for m in tiny.methods:
        assert m.ok, m.error
        assert sorted(m.steps) == [0, 2, 4]
        for q in m.steps.values():
            assert 0 < q.psnr < 60 and -1 <= q.ssim <= 1 and q.lpips is None
        # budget 1e-6 s: nothing fits but the initialisation; 1e3 s: the whole run (exhausted)
        assert [b.step for b in m.budgets] == [0, 4]
        assert [b.exhausted for b in m.budgets] == [False, True]
        assert m.budgets[1].quality == m.steps[4]
        assert m.refine_seconds > 0 and m.predict_seconds >= 0 and m.num_gaussians > 0
    pts, rnd = tiny.method("points"), tiny.method("random")
    assert rnd.num_gaussians == 40
    # points near the true centres beat a random cloud, and refinement lowers the training loss
    assert pts.steps[4].psnr > rnd.steps[4].psnr
    assert pts.steps[4].psnr > pts.steps[0].psnr
    from foresplat.io import read_ply

    assert read_ply(tmp_path / "ply/tiny/points.ply").num == pts.num_gaussians
    with Image.open(tmp_path / "grids/tiny.png") as im:
        assert im.size[0] >= 5 * 96  # ground truth + 2 columns per method
    md = (tmp_path / "results.md").read_text()
    assert "LPIPS: not computed (no weights)" in md and "broken: ERROR ValueError" in md
    assert json.loads((tmp_path / "results.json").read_text())["scenes"][0]["methods"][0]["steps"]["4"]["psnr"] \
        == pytest.approx(pts.steps[4].psnr)


def test_same_seed_same_table(tmp_path, scene):
    cfg = _config(budgets=(1e3,), save_ply=False, save_grids=False)
    methods = build_methods([], ["points", "random"])
    a = evaluate([SceneSource("t", "m", lambda: scene)], methods, cfg, tmp_path / "a", progress=False).report
    b = evaluate([SceneSource("t", "m", lambda: scene)], methods, cfg, tmp_path / "b", progress=False).report
    for ma, mb in zip(a.scenes[0].methods, b.scenes[0].methods):
        for k in cfg.steps:
            assert ma.steps[k].psnr == pytest.approx(mb.steps[k].psnr, abs=1e-4)
            assert ma.steps[k].ssim == pytest.approx(mb.steps[k].ssim, abs=1e-5)


def test_method_failure_is_reported_and_others_run(tmp_path, scene):
    no_points = Scene(scene.images, scene.cameras, name="nopoints", near=0.5, far=10.0)
    methods = build_methods(["ghost=" + str(tmp_path / "missing_model")], ["points", "random"])
    rep = evaluate([SceneSource("nopoints", "m", lambda: no_points)], methods,
                   _config(save_ply=False), tmp_path, progress=False).report
    s = rep.scenes[0]
    assert s.method("ghost").error and "missing_model" in s.method("ghost").error
    assert "no sparse points" in s.method("points").error
    assert s.method("random").ok and s.method("random").steps[4].psnr > 0
    assert rep.ok_scenes() == []  # means only over scenes every method completed
    assert "nopoints / points: ERROR" in (tmp_path / "results.md").read_text()


def test_lpips_in_protocol(tmp_path):
    from test_eval_metrics import _random_lpips_state

    torch.save(_random_lpips_state("vgg", "lpips"), tmp_path / "vgg.pth")
    scene = tiny_scene()
    cfg = _config(budgets=(1e3,), lpips_weights=tmp_path / "vgg.pth", save_ply=False, save_grids=False)
    rep = evaluate([SceneSource("t", "m", lambda: scene)], build_methods([], ["points"]), cfg,
                   tmp_path / "a", progress=False).report
    q = rep.scenes[0].method("points").steps
    assert all(q[k].lpips is not None and q[k].lpips >= 0 for k in cfg.steps)
    assert "LPIPS (lower is better)" in (tmp_path / "a" / "results.md").read_text()
    (tmp_path / "bad.pth").write_bytes(b"junk")
    cfg.lpips_weights = tmp_path / "bad.pth"
    rep = evaluate([SceneSource("t", "m", lambda: scene)], build_methods([], ["points"]), cfg,
                   tmp_path / "b", progress=False).report
    assert rep.lpips_note.startswith("LPIPS: not computed (no weights")
    assert rep.scenes[0].method("points").steps[0].lpips is None


def test_prepare_scene_resizes_and_crops(scene):
    s = prepare_scene(scene, image_size=12, divisor=8)
    assert (s.width, s.height) == (8, 8)
    assert torch.allclose(s.cameras.Ks[0, 0, 2], torch.tensor(4.0))
    assert prepare_scene(scene, None, 1) is scene
    with pytest.raises(ValueError, match="divisor"):
        prepare_scene(scene, image_size=12, divisor=16)


def test_method_specs():
    m = MethodSpec.checkpoint("runs/a/model")
    assert (m.name, m.kind, str(m.path)) == ("model", "checkpoint", "runs/a/model")
    assert MethodSpec.checkpoint("v=runs/x.safetensors").name == "v"
    both = MethodSpec.checkpoint("c=default+points+consistent")
    assert (both.kind, str(both.path), both.consistent, both.foreground) == ("checkpoint+points", "default", True, False)
    fg = MethodSpec.checkpoint("runs/a+b/model+foreground")
    assert (fg.name, str(fg.path), fg.kind, fg.foreground) == ("model+foreground", "runs/a+b/model", "checkpoint", True)
    assert not MethodSpec.checkpoint("c=default+points").consistent
    with pytest.raises(ValueError, match="NAME=PATH"):
        MethodSpec.checkpoint("c=+consistent")
    with pytest.raises(ValueError, match="unique"):
        build_methods(["points=x"], ["points"])
    with pytest.raises(ValueError, match="baselines"):
        _config(baselines=("sparse",)).validate()
    with pytest.raises(ValueError, match="increasing"):
        _config(steps=(0, 4, 2)).validate()


def test_budget_recorder_picks_exact_states(monkeypatch):
    """Fake clock: steps take 1.0 s by step_seconds, the loop adds 0.001 s, the setup 0.5 s."""
    clock = {"t": 0.0, "reads": 0}

    def perf_counter():  # readings: start, then (callback entry, callback exit) per step
        now = clock["t"]
        clock["reads"] += 1
        if clock["reads"] % 2 == 0:  # an entry: the callback body takes 2.5 s, which is not refinement time
            clock["t"] += 2.5
        return now

    monkeypatch.setattr(budget_mod.time, "perf_counter", perf_counter)
    rec = BudgetRecorder([1.5, 2.5, 5.0, 100.0], slack_fraction=0.0, slack_seconds=0.05)
    rec.start()
    clock["t"] += 0.5  # the refiner's setup before step 1 (not in step_seconds)
    states, sizes = {}, []
    for k in range(1, 31):
        clock["t"] += 1.001  # the step plus loop overhead, outside the callback
        g = Gaussians(*(torch.full((1, d), float(k)) for d in (3, 4, 3)), torch.full((1,), float(k)),
                      torch.full((1, 1, 3), float(k)))
        states[k] = g
        rec(k, g, None, 0.0)
        g.means.fill_(-1.0)  # refine updates in place: the recorder must have cloned what it keeps
        sizes.append(len(rec.kept))
    recorded = {0: "g0", 30: states[30]}
    picks = rec.select([1.0] * 30, recorded)
    assert [(h.step, exact) for h, _, exact in picks] == [(1, True), (2, True), (5, True), (30, True)]
    assert [float(state.means[0, 0]) for _, state, _ in picks[:3]] == [1.0, 2.0, 5.0]
    assert picks[3][0].exhausted and not picks[2][0].exhausted
    assert max(sizes) <= 8 and 30 not in rec.kept  # bounded: only states near a budget are kept
    # step times far from what the recorder saw: the answer (step 15) was not kept; the nearest
    # earlier kept state is returned, named by its own step and flagged as not exact
    hit, state, exact = rec.select([0.1] * 30, recorded)[0]
    assert not exact and hit.step < 15 and float(state.means[0, 0]) == hit.step
    assert hit.seconds == pytest.approx(0.1 * hit.step)


def test_eval_cli_on_scene_directory(tmp_path, scene, capsys):
    """`foresplat eval` on a folder with one good transforms.json scene and one broken one."""
    load_scene = pytest.importorskip("foresplat.data").__dict__.get("load_scene")
    if load_scene is None:
        pytest.skip("foresplat.data.load_scene is not available")
    from foresplat.commands.eval import main

    root = tmp_path / "scenes"
    good = root / "good"
    (good / "images").mkdir(parents=True)
    frames = []
    c2w = torch.linalg.inv(scene.cameras.viewmats.double()) @ torch.diag(torch.tensor([1.0, -1, -1, 1]).double())
    for i in range(scene.num_views):
        Image.fromarray((scene.images[i].numpy() * 255 + 0.5).astype(np.uint8)).save(good / "images" / f"{i:03d}.png")
        frames.append({"file_path": f"images/{i:03d}.png", "transform_matrix": c2w[i].tolist()})
    fx = float(scene.cameras.Ks[0, 0, 0])
    (good / "transforms.json").write_text(json.dumps(
        {"camera_angle_x": 2 * math.atan(SIZE / 2 / fx), "frames": frames}))
    bad = root / "bad"
    bad.mkdir()
    (bad / "transforms.json").write_text("{ this is not json")
    out = tmp_path / "out"
    rc = main(["--scenes", str(root), "--num-context", "4", "--num-target", "2", "--steps", "0", "3",
               "--budgets", "1000", "--baselines", "random", "--random-count", "30", "--refine.backend",
               "reference", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr()
    assert rc == 0
    rep = json.loads((out / "results.json").read_text())
    by_name = {s["scene"]: s for s in rep["scenes"]}
    assert by_name["bad"]["error"] and "transforms.json" in by_name["bad"]["error"]
    assert by_name["good"]["error"] is None
    assert by_name["good"]["methods"][0]["steps"]["3"]["psnr"] > 5
    assert "bad: ERROR" in printed.out and "failed" in printed.err
