"""`foresplat experiment claim`: statistics against known cases, presets, and the smoke preset end to end."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest

from foresplat.experiment import (CLAIM_PRESETS, bootstrap_ci, bootstrap_means, bootstrap_steps_to_match,
                                  claim_preset, paired_differences, run_claim, steps_to_match)

# ---- statistics ---------------------------------------------------------------------------------------


def test_paired_differences_values_and_errors():
    t = np.array([[[1.0, 2.0], [3.0, 5.0]]])  # [1 seed, 2 scenes, 2 x]
    c = np.array([[[0.5, 2.5], [3.0, 4.0]]])
    assert np.array_equal(paired_differences(t, c), np.array([[[0.5, -0.5], [0.0, 1.0]]]))
    with pytest.raises(ValueError, match="equal shape"):
        paired_differences(t, c[:, :1])
    with pytest.raises(ValueError, match="non-finite"):
        paired_differences(t, np.where(c >= 4, np.nan, c))


def test_bootstrap_two_scenes_matches_the_exact_bootstrap_distribution():
    # one seed, scenes {a, b}: the resampled mean is a (p 1/4), (a+b)/2 (p 1/2) or b (p 1/4), so the
    # 2.5% / 97.5% percentiles are a and b exactly, and the replicate mean tends to (a+b)/2
    d = np.array([[[1.0], [3.0]]])
    reps = bootstrap_means(d, n_boot=4000, seed=1)[:, 0]
    assert set(np.unique(reps)) == {1.0, 2.0, 3.0}
    assert abs((reps == 2.0).mean() - 0.5) < 0.03 and abs((reps == 1.0).mean() - 0.25) < 0.03
    (ci,) = bootstrap_ci(d, n_boot=4000, seed=1)
    assert (ci.mean, ci.low, ci.high) == (2.0, 1.0, 3.0)


def test_bootstrap_ci_of_a_normal_sample_matches_the_normal_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 1.0, size=400)
    (ci,) = bootstrap_ci(x.reshape(1, -1, 1), n_boot=4000, seed=0)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)  # the textbook 95% interval of a mean
    assert ci.mean == pytest.approx(x.mean())
    assert ci.low == pytest.approx(x.mean() - half, abs=0.2 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.2 * half)
    assert ci.above_zero


def test_bootstrap_resamples_seeds_as_well_as_scenes():
    # every scene agrees within a seed, the seeds disagree: only seed resampling shows the uncertainty
    d = np.repeat(np.array([-1.0, 0.0, 1.0])[:, None, None], 8, axis=1)  # [3 seeds, 8 scenes, 1]
    (fixed,) = bootstrap_ci(d, resample_seeds=False, n_boot=500)
    (both,) = bootstrap_ci(d, n_boot=2000)
    assert (fixed.low, fixed.high) == (0.0, 0.0)
    assert both.low <= -2 / 3 and both.high >= 2 / 3 and not both.above_zero
    (const,) = bootstrap_ci(np.full((3, 5, 1), 0.7), n_boot=200)
    assert const.low == pytest.approx(0.7) and const.high == pytest.approx(0.7)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(d, level=1.0)


def test_steps_to_match_interpolates_and_says_never():
    steps = [0, 200, 500, 1000, 2000]
    control = [21.0, 25.0, 26.0, 26.5, 27.0]
    assert steps_to_match(steps, [20.0, 26.0, 27.5, 28.0, 28.2], control) == pytest.approx(400.0)  # 200 + 1/1.5 * 300
    assert steps_to_match(steps, [27.0, 27.1, 27.2, 27.3, 27.4], control) == 0.0
    assert steps_to_match(steps, [20.0, 25.0, 26.0, 26.5, 26.9], control) is None
    with pytest.raises(ValueError):
        steps_to_match(steps, control, control[:3])


def test_bootstrap_steps_to_match_on_identical_cells():
    steps = [0, 10, 20]
    v = np.tile(np.array([1.0, 2.0, 3.0]), (2, 4, 1))  # [2 seeds, 4 scenes, 3 steps], all cells alike
    m = np.tile(np.array([1.0, 4.0, 5.0]), (2, 4, 1))
    point, lo, hi = bootstrap_steps_to_match(steps, m, v, n_boot=100)
    assert point == pytest.approx(20 / 3) and lo == pytest.approx(point) and hi == pytest.approx(point)
    _, lo, hi = bootstrap_steps_to_match(steps, v - 1.0, v, n_boot=50)
    assert lo == math.inf and hi == math.inf


# ---- presets --------------------------------------------------------------------------------------------


def test_presets_validate_and_gpu_is_paper_scale():
    for name in CLAIM_PRESETS:
        claim_preset(name)
    gpu = claim_preset("gpu")
    assert (gpu.image_size, gpu.num_context, gpu.num_target, gpu.finetune_iterations) == (224, 12, 4, 2000)
    assert (gpu.k_min, gpu.k_max, gpu.stride, gpu.backend) == (50, 500, 40, "gsplat")
    assert len(gpu.seeds) >= 3 and gpu.eval_scenes >= 16 and gpu.steps == (0, 200, 500, 1000, 2000)
    cpu = claim_preset("cpu")
    assert len(cpu.seeds) >= 3 and cpu.eval_scenes >= 16 and cpu.steps[-1] == 2000
    with pytest.raises(ValueError, match="ClaimConfig.eval_scenes"):
        claim_preset("cpu", eval_scenes=0)
    with pytest.raises(ValueError, match="--preset"):
        claim_preset("huge")


def test_gpu_preset_builds_its_finetune_and_eval_configs(tmp_path):
    from foresplat.experiment.runner import base_checkpoint, eval_config, finetune_config
    from foresplat.models import Predictor

    cfg = claim_preset("gpu")
    base = base_checkpoint(cfg, tmp_path, progress=False)  # the shipped predictor
    assert cfg.image_size % Predictor.from_checkpoint(base).divisor == 0
    for rule in ("vanilla", "metagrad"):
        tc = finetune_config(cfg, rule, base, 0, tmp_path / rule, progress=False).validate()
        assert (tc.width, tc.height, tc.num_context, tc.num_target, tc.iterations) == (224, 224, 12, 4, 2000)
        assert tc.synthetic.num_views >= 16 and tc.datasets == () and not tc.train_backbone and tc.keep_checkpoints == 2
        assert tc.backend == "gsplat" and tc.device == "cuda" and tc.rule.refine.steps == 2000 and tc.rule_workers == 1
        assert (tc.rule.k_min, tc.rule.k_max, tc.rule.stride) == (50, 500, 40)
    ec = eval_config(cfg, real=True)
    assert (ec.num_context, ec.num_target, ec.image_size) == (12, 4, 224)


def test_anchor_views_and_scene_pool_reach_the_finetunes_and_old_runs_resume(tmp_path, capsys):
    from foresplat.cli import main
    from foresplat.experiment.runner import finetune_config, prepare_out_dir

    cfg = claim_preset("cpu", anchor_views="both", synthetic_pool=0)
    tc = finetune_config(cfg, "metagrad", tmp_path / "b", 0, tmp_path / "m", progress=False).validate()
    assert tc.rule.anchor_views == "both" and tc.synthetic_pool == 0 and tc.rule.refine.steps == 2000
    plain = finetune_config(claim_preset("cpu"), "metagrad", tmp_path / "b", 0, tmp_path / "m", progress=False)
    assert plain.rule.anchor_views == "target" and plain.synthetic_pool == 64  # the real preset's pool
    assert main(["experiment", "claim", "--preset", "cpu", "--anchor-views", "context", "--synthetic-pool", "0",
                 "--plan", "--no-estimate"]) == 0
    printed = capsys.readouterr().out
    assert "'anchor_views': 'context'" in printed and "'synthetic_pool': 0" in printed
    assert main(["experiment", "claim", "--preset", "cpu", "--synthetic-only", "False", "--plan", "--no-estimate"]) == 0
    assert "'synthetic_only': False" in capsys.readouterr().out
    mixed = finetune_config(claim_preset("cpu", synthetic_only=False), "metagrad", tmp_path / "b", 0, tmp_path / "m",
                            progress=False)
    assert plain.datasets == () and mixed.datasets and mixed.dataset_weight > 0  # the real preset's scene folders
    # a run recorded before these fields existed resumes with their defaults, and not with others
    record = prepare_out_dir(tmp_path / "old", claim_preset("cpu"), resume=False)
    for key in ("anchor_views", "synthetic_pool"):
        del record["config"][key]
    (tmp_path / "old" / "claim.json").write_text(json.dumps(record))
    assert prepare_out_dir(tmp_path / "old", claim_preset("cpu"), resume=True)["config"] == record["config"]
    with pytest.raises(ValueError, match="anchor_views"):
        prepare_out_dir(tmp_path / "old", claim_preset("cpu", anchor_views="both"), resume=True)


def test_demo_finetune_config_is_the_shared_one():
    from foresplat.meta import RuleConfig
    from foresplat.train import train_preset
    from foresplat.train.finetune import rule_finetune_config

    got = rule_finetune_config("metagrad", "b", preset="demo", iterations=200, lr=1e-2, seed=3, out_dir="o",
                               k_min=10, k_max=100, stride=10, progress=False)
    want = train_preset("demo", rule=RuleConfig(name="metagrad", lam=0.0, k_min=10, k_max=100, stride=10),
                        init_checkpoint="b", train_backbone=False, iterations=200, lr=1e-2, warmup=20, seed=3,
                        val_scenes=0, out_dir="o", progress=False)
    assert got == want


def test_what_the_finetunes_train_reaches_them_and_old_runs_resume(tmp_path):
    import json

    from foresplat.experiment import claim_preset
    from foresplat.experiment.runner import check_control, finetune_config, prepare_out_dir

    head = claim_preset("cpu")
    whole = claim_preset("cpu", finetune_backbone=True)
    assert not finetune_config(head, "vanilla", tmp_path / "b", 0, tmp_path / "h", False).train_backbone
    assert finetune_config(whole, "metagrad", tmp_path / "b", 0, tmp_path / "w", False).train_backbone
    record = prepare_out_dir(tmp_path / "old", head, resume=False)
    del record["config"]["finetune_backbone"]  # a run stored before the field existed ran the head only
    (tmp_path / "old" / "claim.json").write_text(json.dumps(record))
    assert prepare_out_dir(tmp_path / "old", head, resume=True)
    with pytest.raises(ValueError, match="finetune_backbone"):
        prepare_out_dir(tmp_path / "old", whole, resume=True)
    with pytest.raises(ValueError, match="finetune_backbone"):  # the vanilla arm changes too: no shared control
        check_control(whole, tmp_path / "old")
    opacity = claim_preset("cpu", head_outputs=("opacity", "scale"))
    assert finetune_config(opacity, "metagrad", tmp_path / "b", 0, tmp_path / "o", False).head_outputs == (
        "opacity", "scale")
    with pytest.raises(ValueError, match="head_outputs"):
        claim_preset("cpu", head_outputs=("opacity",), finetune_backbone=True)
    from foresplat.experiment.report import _trained_part

    assert [_trained_part(c) for c in (head, whole, opacity)] == [
        "head only", "whole network", "head's last layer, outputs opacity/scale"]


# ---- end to end -----------------------------------------------------------------------------------------


def test_smoke_preset_end_to_end_and_resume(tmp_path, capsys):
    cfg = claim_preset("smoke")
    out = tmp_path / "claim"
    run = run_claim(cfg, out, progress=False)
    a = run.analyses["synthetic"]
    assert len(a.scenes) == cfg.eval_scenes and a.seeds == list(cfg.seeds) and not a.dropped
    assert a.vanilla.shape == (len(cfg.seeds), cfg.eval_scenes, len(cfg.steps))
    assert np.isfinite(a.vanilla).all() and np.isfinite(a.treatment).all()
    assert all(i.low <= i.mean <= i.high for i in a.diff_steps + a.diff_budgets)
    # the heads differ (the rules trained them differently), and the pairing is per scene and seed
    assert not np.array_equal(a.vanilla, a.treatment)
    d = json.loads((out / "results/synthetic/claim.json").read_text())
    assert d["diff_steps"][-1]["mean"] == pytest.approx(float((a.treatment - a.vanilla)[..., -1].mean()))
    assert "NOT CHECKED" in a.verdict and "too small a design" in a.verdict  # 3 scenes < 16
    for name in ("claim.md", "claim.csv", "psnr_vs_steps_ci.png", "results.md", "psnr_vs_steps.png"):
        assert (out / "results/synthetic" / name).is_file(), name
    assert "each (head only, lr" in (out / "results/synthetic/claim.md").read_text()
    cells = sorted((out / "cells/synthetic").rglob("*.json"))
    assert len(cells) == 2 * len(cfg.seeds) * cfg.eval_scenes
    stamps = {p: p.stat().st_mtime_ns for p in cells}
    assert "rule_workers: 2" in (out / "finetune/seed0/metagrad/config.yaml").read_text()  # threads, same result
    ft = out / "finetune/seed0/metagrad/model.safetensors"
    ft_stamp = ft.stat().st_mtime_ns

    with pytest.raises(FileExistsError, match="--resume"):
        run_claim(cfg, out, progress=False)
    with pytest.raises(ValueError, match="another config"):
        run_claim(claim_preset("smoke", finetune_iterations=cfg.finetune_iterations + 1), out, resume=True,
                  progress=False)
    rep = run_claim(cfg, out, report_only=True, progress=False).analyses["synthetic"]
    assert np.array_equal(rep.vanilla, a.vanilla) and rep.verdict == a.verdict
    cells[0].unlink()  # report-only leaves that scene out; a resume recomputes the lost cell, nothing else
    rep = run_claim(cfg, out, report_only=True, progress=False).analyses["synthetic"]
    assert len(rep.scenes) == cfg.eval_scenes - 1 and "Partial: 2 of 3" in rep.markdown and not cells[0].exists()
    again = run_claim(cfg, out, resume=True, progress=False)
    assert ft.stat().st_mtime_ns == ft_stamp
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p != cells[0]) and cells[0].is_file()
    b = again.analyses["synthetic"]
    assert np.allclose(b.vanilla, a.vanilla, atol=1e-4) and np.allclose(b.treatment, a.treatment, atol=1e-4)
    assert json.loads((out / "claim.json").read_text())["status"] == "done"

    # the evaluation set may grow on resume: only the new scene's cells are computed, the record follows
    more = claim_preset("smoke", eval_scenes=cfg.eval_scenes + 1)
    rep = run_claim(more, out, report_only=True, progress=False).analyses["synthetic"]
    assert "Partial: 3 of 4" in rep.markdown
    assert json.loads((out / "claim.json").read_text())["config"]["eval_scenes"] == cfg.eval_scenes
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells/synthetic").rglob("*.json")}
    grown = run_claim(more, out, resume=True, progress=False).analyses["synthetic"]
    assert len(grown.scenes) == cfg.eval_scenes + 1 and ft.stat().st_mtime_ns == ft_stamp
    assert np.allclose(grown.vanilla[:, :cfg.eval_scenes], b.vanilla, atol=1e-4)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert len(list((out / "cells/synthetic").rglob("*.json"))) == 2 * len(cfg.seeds) * (cfg.eval_scenes + 1)
    assert json.loads((out / "claim.json").read_text())["config"]["eval_scenes"] == cfg.eval_scenes + 1
    assert "evaluation set changed (eval_scenes 3 -> 4)" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    from foresplat.cli import main

    assert main(["experiment", "claim", "--preset", "smoke", "--eval-scenes", "0", "--out-dir", str(tmp_path / "x")]) == 2
    assert "ClaimConfig.eval_scenes" in capsys.readouterr().err
    assert main(["experiment", "bogus"]) == 2 and main(["experiment"]) == 2
    assert main(["experiment", "--help"]) == 0
    assert main(["experiment", "claim", "--preset", "gpu", "--plan"]) == 0
    printed = capsys.readouterr().out
    assert "2000 outer iterations" in printed and "estimate" in printed
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "f.txt").write_text("not a claim run")
    assert main(["experiment", "claim", "--preset", "smoke", "--out-dir", str(tmp_path / "y")]) == 2
    assert "not a claim experiment folder" in capsys.readouterr().err


def test_plan_estimate_scales_the_measured_step_time():
    from foresplat.experiment.estimate import estimate

    cfg = claim_preset("smoke")
    e = estimate(cfg, probe_steps=3)
    assert math.isfinite(e.step_seconds) and e.step_seconds > 0
    cells = len(cfg.seeds) * 2 * cfg.eval_scenes
    assert e.evaluation == pytest.approx(cells * cfg.steps[-1] * e.step_seconds)
    assert e.metagrad > e.vanilla > 0 and e.total == pytest.approx(e.metagrad + e.vanilla + e.evaluation)
    with pytest.raises(ValueError, match="probe_steps"):
        estimate(cfg, probe_steps=1)


def test_cli_overrides_reach_the_config(capsys):
    from foresplat.cli import main

    assert claim_preset("cpu").lam == 0.5 and claim_preset("gpu").lam == 0.0
    assert main(["experiment", "claim", "--preset", "cpu", "--stride", "20", "--lam", "0.25", "--k-min", "10",
                 "--finetune-lr", "0.003", "--image-size", "24", "--train-size", "32", "--treatment", "reptile",
                 "--plan", "--no-estimate"]) == 0
    out = capsys.readouterr().out
    assert "'stride': 20" in out and "'lam': 0.25" in out and "'k_min': 10" in out and "'finetune_lr': 0.003" in out
    assert "'image_size': 24" in out and "'train_size': 32" in out and "'treatment': 'reptile'" in out
    assert main(["experiment", "claim", "--preset", "cpu", "--lam", "1.0", "--plan"]) == 2
    assert "ClaimConfig.lam" in capsys.readouterr().err


def _cells(v_curve, m_curve, seeds, scenes, noise=0.05, budgets=2):
    from foresplat.evaluate.results import BudgetPoint, MethodResult, Quality

    rng = np.random.default_rng(0)
    steps = (0, 200, 500, 1000, 2000)
    cells = {}
    for s in seeds:
        for j in scenes:
            shift = rng.normal(0, 1.0)  # scenes differ a lot; the pairing removes it
            for rule, curve in (("vanilla", v_curve), ("metagrad", m_curve)):
                mr = MethodResult(rule, j)
                mr.steps = {k: Quality(c + shift + rng.normal(0, noise), 0.9) for k, c in zip(steps, curve)}
                mr.budgets = [BudgetPoint(1.0, 1.0, 200, 1.0, False, mr.steps[200]) for _ in range(budgets)]
                cells[(s, rule, j)] = mr
    return cells


def test_verdict_is_computed_from_the_numbers():
    from foresplat.experiment.report import analyse

    cfg = claim_preset("cpu", budgets=(1.0, 2.0))
    scenes = [f"s{j}" for j in range(16)]
    vanilla = [20.0, 25.0, 26.0, 26.5, 27.0]
    good = analyse(cfg, "synthetic", scenes, _cells(vanilla, [19.0, 26.8, 27.5, 27.8, 28.0], cfg.seeds, scenes))
    assert "REPRODUCED: every required claim holds" in good.verdict
    assert good.diff_steps[-1].mean == pytest.approx(1.0, abs=0.05) and good.diff_steps[-1].above_zero
    assert good.match[0] == pytest.approx(200 + 0.2 / 0.7 * 300, abs=15)
    small = analyse(cfg, "synthetic", scenes, _cells(vanilla, [v + 0.2 for v in vanilla], cfg.seeds, scenes))
    assert "NOT REPRODUCED" in small.verdict and small.diff_steps[-1].above_zero  # real but too small a gain
    few = analyse(cfg, "real", scenes[:5], _cells(vanilla, [19.0, 26.8, 27.5, 27.8, 28.0], cfg.seeds, scenes[:5]))
    assert "too small a design" in few.verdict
    assert "REPRODUCED: every" in analyse(cfg, "real", scenes[:5], _cells(
        vanilla, [19.0, 26.8, 27.5, 27.8, 28.0], cfg.seeds, scenes[:5]), min_scenes=5).verdict
    broken = _cells(vanilla, vanilla, cfg.seeds, scenes)
    broken[(1, "metagrad", "s3")].error = "FloatingPointError: diverged"
    b = analyse(cfg, "synthetic", scenes, broken)
    assert "s3" in b.dropped and len(b.scenes) == 15 and "too small a design" in b.verdict


def test_control_from_copies_the_vanilla_arm_which_the_treatment_fields_do_not_change(tmp_path, capsys):
    base = dict(seeds=(0,), eval_scenes=2)
    a = run_claim(claim_preset("smoke", **base), tmp_path / "a", progress=False).analyses["synthetic"]
    treat = dict(base, lam=0.3, k_min=3, k_max=5, stride=1, anchor_views="both")
    capsys.readouterr()
    b = run_claim(claim_preset("smoke", **treat), tmp_path / "b", progress=False,
                  control_from=tmp_path / "a").analyses["synthetic"]
    printed = capsys.readouterr().out
    assert "3 vanilla fine-tunes and cells copied" in printed and "seed 0 vanilla: done earlier" in printed
    for cell in sorted((tmp_path / "a/cells").rglob("vanilla/*.json")):
        assert (tmp_path / "b" / cell.relative_to(tmp_path / "a")).read_bytes() == cell.read_bytes()
    assert not (tmp_path / "b/finetune/seed0/vanilla/checkpoints").exists()
    assert json.loads((tmp_path / "b/claim.json").read_text())["control_from"] == [str(tmp_path / "a")]
    assert "copied from" in b.markdown and "wall-clock budget columns" in b.markdown
    # what makes the copy valid: the same treatment run computed from scratch has the same control
    c = run_claim(claim_preset("smoke", **treat), tmp_path / "c", progress=False).analyses["synthetic"]
    assert np.allclose(c.vanilla, a.vanilla, atol=1e-5) and np.array_equal(b.vanilla, a.vanilla)
    assert np.allclose(c.treatment, b.treatment, atol=1e-5) and not np.allclose(b.treatment, a.treatment, atol=1e-3)
    with pytest.raises(ValueError, match=r"differs in \['finetune_iterations'\]"):
        run_claim(claim_preset("smoke", **dict(treat, finetune_iterations=3)), tmp_path / "d", progress=False,
                  control_from=tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="--control-from"):
        run_claim(claim_preset("smoke", **treat), tmp_path / "e", progress=False, control_from=tmp_path / "nope")
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()  # refused before writing
    # a reference rule as the treatment, against the same control
    r = run_claim(claim_preset("smoke", **dict(base, treatment="reptile")), tmp_path / "r", progress=False,
                  control_from=tmp_path / "a").analyses["synthetic"]
    assert np.array_equal(r.vanilla, a.vanilla) and not np.allclose(r.treatment, a.treatment, atol=1e-3)
    assert (tmp_path / "r/finetune/seed0/reptile/model.safetensors").is_file()
    assert "| reptile - vanilla [CI] |" in r.markdown and "Reptile ends >=" in r.verdict
    assert "reptile_psnr" in (tmp_path / "r/results/synthetic/claim.csv").read_text().splitlines()[0]
    with pytest.raises(ValueError, match="ClaimConfig.k_max"):
        claim_preset("smoke", treatment="unrolled", k_max=9)
    # the study table over these runs: what each changed, and the numbers its analysis has
    from foresplat.cli import main
    from foresplat.experiment.report import format_interval

    capsys.readouterr()
    out = tmp_path / "study.md"
    assert main(["experiment", "study", str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "r"),
                 "--out", str(out)]) == 0
    rows = {line.split(" | ")[0][2:]: line for line in out.read_text().splitlines()[2:]}
    assert set(rows) == {str(tmp_path / x) for x in "abr"} and capsys.readouterr().out.startswith("| run |")
    for run, analysis in ((tmp_path / "a", a), (tmp_path / "b", b), (tmp_path / "r", r)):
        row = rows[str(run)]
        assert "`--seeds 0`" in row and "`--eval-scenes 2`" in row and "| 2 x 1 |" in row
        assert all(format_interval(i) in row for i in analysis.diff_steps)
    assert all(f"`{o}`" in rows[str(tmp_path / "b")] for o in ("--lam 0.3", "--k-min 3", "--k-max 5", "--stride 1",
                                                              "--anchor-views both"))
    assert "(c: vanilla arm from" in rows[str(tmp_path / "b")]
    assert "`--treatment reptile`" in rows[str(tmp_path / "r")] and "--lam" not in rows[str(tmp_path / "a")]
    lines = out.with_suffix(".csv").read_text().splitlines()
    assert len(lines) == 1 + 3 * 5 and lines[0].startswith("run,preset,options")
    assert main(["experiment", "study", str(tmp_path / "d")]) == 2  # refused above: no run there
    err = capsys.readouterr().err
    assert "no results/synthetic/claim.json" in err and len(err.strip().splitlines()) == 1
    assert main(["experiment", "study"]) == 2 and "one or more claim run folders" in capsys.readouterr().err
    from foresplat.evaluate.results import json_safe
    from foresplat.experiment.study import changed_options

    stored = json_safe(asdict(claim_preset("cpu", base="x.pt", real_scenes=True, min_gain=0.3)))
    assert changed_options(stored) == ["--base-ckpt x.pt", "--real True", "min_gain=0.3"]  # no CLI option: name=value
