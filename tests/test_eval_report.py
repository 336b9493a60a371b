"""Evaluation bookkeeping: budgets, means, derived figures, tables, plots and grids (no rendering)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from foresplat.evaluate.budget import budget_steps, cumulative_seconds
from foresplat.evaluate.derived import derived_figures, mean_curves, pick_reference, steps_to_reach
from foresplat.evaluate.grid import write_grid
from foresplat.evaluate.plots import write_plots
from foresplat.evaluate.results import BudgetPoint, EvalReport, MethodResult, Quality, SceneResult
from foresplat.evaluate.tables import csv_table, markdown_table, write_tables


def test_budget_steps_pick_last_step_within_budget():
    d = [0.1, 0.2, 0.3, 0.4]  # cumulative 0, .1, .3, .6, 1.0
    assert cumulative_seconds(d) == pytest.approx([0, 0.1, 0.3, 0.6, 1.0])
    hits = budget_steps(d, [0.0, 0.05, 0.3, 0.59, 1.0, 5.0])
    assert [h.step for h in hits] == [0, 0, 2, 2, 4, 4]
    assert [h.exhausted for h in hits] == [False, False, False, False, True, True]
    assert hits[2].seconds == pytest.approx(0.3)
    assert budget_steps([], [1.0])[0].step == 0 and budget_steps([], [1.0])[0].exhausted
    with pytest.raises(ValueError, match=r"step_seconds\[1\]"):
        budget_steps([0.1, float("nan")], [1.0])
    with pytest.raises(ValueError, match="budget"):
        budget_steps([0.1], [-1.0])


def test_steps_to_reach_interpolates():
    steps = [0, 100, 200, 400]
    assert steps_to_reach(steps, [10, 20, 30, 40], 25) == pytest.approx(150)
    assert steps_to_reach(steps, [10, 20, 30, 40], 5) == 0
    assert steps_to_reach(steps, [10, 20, 30, 40], 40) == pytest.approx(400)
    assert steps_to_reach(steps, [10, 20, 30, 40], 40.5) is None
    # first crossing counts even if the curve dips afterwards
    assert steps_to_reach(steps, [10, 30, 20, 40], 25) == pytest.approx(75)
    with pytest.raises(ValueError, match="increasing"):
        steps_to_reach([0, 0], [1, 2], 1)


def _report(lpips: bool = False) -> EvalReport:
    """Two scenes, three methods, and one broken scene; PSNR curves chosen by hand."""
    steps = [0, 10, 20, 40]
    curves = {  # method -> per-scene PSNR at steps
        "vanilla": [[20, 24, 26, 27], [22, 26, 28, 29]],
        "metagrad": [[19, 25, 27.5, 28.0], [21, 27, 29.5, 30.0]],
        "points": [[10, 15, 18, 20], [12, 17, 20, 22]],
    }
    scenes = []
    for si in range(2):
        methods = []
        for name, per_scene in curves.items():
            qs = {k: Quality(p, 0.5 + p / 100, (0.3 - p / 200) if lpips else None)
                  for k, p in zip(steps, per_scene[si])}
            budgets = [BudgetPoint(budget=0.5, nominal=1.0, step=10, seconds=0.4, exhausted=False, quality=qs[10]),
                       BudgetPoint(budget=1.0, nominal=2.0, step=40, seconds=0.9, exhausted=True, quality=qs[40])]
            methods.append(MethodResult(name, f"s{si}", steps=qs, budgets=budgets, predict_seconds=0.01,
                                        refine_seconds=0.9, num_gaussians=100))
        scenes.append(SceneResult(f"s{si}", methods=methods))
    scenes.append(SceneResult("broken", error="ValueError: cannot read transforms.json"))
    rep = EvalReport(methods=list(curves), steps=steps, budgets=[1.0, 2.0], time_scale=0.5, scenes=scenes,
                     reference="vanilla")
    if lpips:
        rep.lpips_note = "LPIPS: alex weights from w.pth"
    return rep


def test_mean_curves_and_derived():
    rep = _report()
    curves = mean_curves(rep)
    assert [s.scene for s in rep.ok_scenes()] == ["s0", "s1"]
    assert curves["vanilla"].steps[40]["psnr"] == pytest.approx(28)
    assert curves["metagrad"].steps[0]["psnr"] == pytest.approx(20)
    assert curves["vanilla"].steps[0]["lpips"] is None
    assert curves["points"].budgets[2.0]["exhausted"] == pytest.approx(1.0)
    der = {d.method: d for d in derived_figures(curves, "vanilla")}
    # metagrad mean: 20, 26, 28.5, 29.0; vanilla final 28 -> reached between 10 (26) and 20 (28.5)
    assert der["metagrad"].steps_to_reference_final == pytest.approx(10 + 2 / 2.5 * 10)
    assert der["metagrad"].final_gain == pytest.approx(1.0)
    assert der["metagrad"].peak_gain == pytest.approx(1.5) and der["metagrad"].peak_gain_step == 20
    assert der["vanilla"].steps_to_reference_final == pytest.approx(40)
    assert der["points"].steps_to_reference_final is None
    assert pick_reference(["a", "my_vanilla", "vanilla"]) == "my_vanilla"
    assert pick_reference(["a"]) is None
    with pytest.raises(ValueError, match="not among"):
        pick_reference(["a"], "b")


def test_failed_method_excludes_scene_from_means():
    rep = _report()
    rep.scenes[1].methods[2].error = "RuntimeError: boom"
    assert [s.scene for s in rep.ok_scenes()] == ["s0"]
    assert mean_curves(rep)["vanilla"].steps[40]["psnr"] == pytest.approx(27)
    md = markdown_table(rep)
    assert "s1 / points: ERROR RuntimeError: boom" in md


def test_tables_markdown_csv_json(tmp_path):
    rep = _report()
    md = markdown_table(rep)
    assert "LPIPS: not computed (no weights)" in md
    assert "broken: ERROR ValueError: cannot read transforms.json" in md
    assert "| metagrad | 20.00 | 26.00 | 28.50 | 29.00 |" in md
    assert "| vanilla | 0.010 | 25.00 (10) | 28.00 (40)* |" in md
    assert "never" in md  # points never reaches vanilla's final PSNR
    rows = list(csv.DictReader(io.StringIO(csv_table(rep))))
    mean_rows = [r for r in rows if r["scene"] == "mean" and r["method"] == "vanilla" and r["axis"] == "steps"]
    assert [float(r["psnr"]) for r in mean_rows] == pytest.approx([21, 25, 27, 28])
    assert any(r["scene"] == "broken" and "transforms.json" in r["error"] for r in rows)
    paths = write_tables(rep, tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert doc["mean"]["metagrad"]["steps"]["40"]["psnr"] == pytest.approx(29.0)
    assert {d["method"] for d in doc["derived"]} == {"vanilla", "metagrad", "points"}
    back = EvalReport.from_dict(doc)  # the derived keys ("mean", "derived") are recomputed, not read
    assert back.scenes[0].methods[1].steps[20].psnr == pytest.approx(27.5)
    assert back.scenes[2].error.startswith("ValueError")
    assert markdown_table(back) == md
    assert not list(tmp_path.glob(".tmp-*"))


def test_tables_with_lpips():
    md = markdown_table(_report(lpips=True))
    assert "LPIPS (lower is better)" in md and "not computed" not in md


def test_plots_and_grid(tmp_path):
    paths = write_plots(_report(), tmp_path)
    assert set(paths) == {"psnr_vs_steps", "psnr_vs_seconds"}
    for p in paths.values():
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 100
    cols = [("ground truth", torch.rand(2, 8, 10, 3)), ("step 0", torch.zeros(2, 8, 10, 3)),
            ("final", torch.ones(2, 8, 10, 3))]
    g = write_grid(tmp_path / "grid.png", cols)
    with Image.open(g) as im:
        arr = torch.from_numpy(np.array(im.convert("RGB"))).float()
    assert im.size[0] > 3 * 96 and im.size[1] > 2 * 96
    with pytest.raises(ValueError, match="column 'x'"):
        write_grid(tmp_path / "bad.png", cols + [("x", torch.rand(1, 8, 10, 3))])
    assert arr.max() == 255 and not (tmp_path / "bad.png").exists()


def test_empty_report_plots_nothing(tmp_path):
    rep = EvalReport(methods=["a"], steps=[0, 1], budgets=[1.0], time_scale=1.0,
                     scenes=[SceneResult("x", error="boom")])
    assert write_plots(rep, tmp_path) == {}
    assert "No scene was evaluated successfully" in markdown_table(rep)


def test_claims_verdict_from_numbers():
    from foresplat.evaluate.claims import check_claims, verdict_text

    rep = _report()
    rep.methods.append("random")
    for s in rep.scenes[:2]:
        pts = s.method("points")
        steps = {k: Quality(q.psnr - 3, q.ssim) for k, q in pts.steps.items()}
        s.methods.append(MethodResult("random", s.scene, steps=steps, budgets=pts.budgets))
    claims = check_claims(rep, min_gain=0.5, max_fraction=0.25)
    # metagrad: final gain +1.0 dB (pass); reaches vanilla's final at 18/40 = 0.45 > 0.25 (fail)
    assert claims[0].holds is True and "+1.00 dB" in claims[0].evidence
    assert claims[1].holds is False and "step 18 of 40" in claims[1].evidence
    assert claims[2].holds is True and "+7.00 dB at step 40" in claims[2].evidence
    assert claims[3].holds is True and not claims[3].required  # starts lower at step 0
    text = verdict_text(claims)
    assert "NOT REPRODUCED: 1 of 3 required claims fail" in text and "[FAIL]" in text
    assert verdict_text(check_claims(rep, max_fraction=0.5)).endswith("REPRODUCED: every required claim holds")
    # a baseline that beats a learned model at some step makes claim 3 fail
    rep.scenes[0].method("random").steps[40] = Quality(40.0, 0.9)
    rep.scenes[1].method("random").steps[40] = Quality(40.0, 0.9)
    assert check_claims(rep)[2].holds is False
    # missing methods: not checked, never a pass
    missing = check_claims(rep, metagrad="nope")
    assert all(c.holds is None for c in missing)
    assert "NOT CHECKED" in verdict_text(missing)
