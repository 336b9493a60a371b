"""The claim experiment's analysis of one scene set: paired differences, CIs, steps to match, verdict, files.

`analyse` turns the evaluated cells {(seed, rule, scene): MethodResult} into a ClaimAnalysis over the
scenes that every head of every seed completed; `write_results` writes claim.md / claim.csv /
claim.json and psnr_vs_steps_ci.png, plus the pooled per-(scene, seed) tables and plots of
foresplat.evaluate (results.md/.csv/.json, psnr_vs_steps.png, psnr_vs_seconds.png).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from foresplat.evaluate.claims import Claim, verdict_text
from foresplat.evaluate.results import EvalReport, SceneResult, json_safe
from foresplat.experiment.config import TREATMENT_LABELS, ClaimConfig
from foresplat.experiment.stats import Interval, bootstrap_ci, bootstrap_steps_to_match, paired_differences, steps_to_match
from foresplat.io.atomic import atomic_write_json, atomic_write_text

CONTROL = "vanilla"


@dataclass
class ClaimAnalysis:
    """Everything computed for one scene set (PSNR in dB; arrays are [seeds, scenes, x])."""

    which: str
    config: ClaimConfig
    seeds: list[int]
    scenes: list[str]
    """Scenes every head of every seed completed (the ones the statistics use)."""
    dropped: dict[str, str]
    """Scene -> why it was left out (a load error or a failed cell)."""
    steps: list[int]
    budgets: list[float]
    vanilla: np.ndarray
    """PSNR [S, J, steps] of the vanilla heads."""
    treatment: np.ndarray
    """PSNR [S, J, steps] of the treatment heads (config.treatment: MetaGrad unless a reference rule)."""
    vanilla_budget: np.ndarray
    """PSNR [S, J, budgets] at the wall-clock budgets."""
    treatment_budget: np.ndarray
    diff_steps: list[Interval] = field(default_factory=list)
    diff_budgets: list[Interval] = field(default_factory=list)
    vanilla_ci: list[Interval] = field(default_factory=list)
    treatment_ci: list[Interval] = field(default_factory=list)
    match: tuple[float | None, float, float] | None = None
    """Steps the treatment needs to reach vanilla's final PSNR: (estimate, CI low, CI high); inf = never."""
    match_per_seed: dict[int, float | None] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    verdict: str = ""
    pooled: EvalReport | None = None
    """Per (scene, seed) results as one EvalReport (scenes named 'SCENE seed S') for the standard tables."""
    markdown: str = ""


def _grid(cells: dict, seeds: list[int], scenes: list[str], rule: str, steps: list[int], n_budgets: int):
    s_arr = np.array([[[cells[(s, rule, j)].steps[k].psnr for k in steps] for j in scenes] for s in seeds])
    b_arr = np.array([[[cells[(s, rule, j)].budgets[i].quality.psnr for i in range(n_budgets)] for j in scenes]
                      for s in seeds])
    return s_arr.reshape(len(seeds), len(scenes), len(steps)), b_arr.reshape(len(seeds), len(scenes), n_budgets)


def _complete(mr, steps: list[int], n_budgets: int) -> str | None:
    """None when the cell holds every step and budget, else why not."""
    if mr is None:
        return "not evaluated"
    if mr.error:
        return mr.error
    if any(k not in mr.steps or not math.isfinite(mr.steps[k].psnr) for k in steps):
        return "missing step results"
    if len(mr.budgets) != n_budgets or any(b.quality is None for b in mr.budgets):
        return "missing budget results"
    return None


def analyse(config: ClaimConfig, which: str, scene_names: list[str], cells: dict,
            min_scenes: int | None = None) -> ClaimAnalysis:
    """The statistics and verdict of one scene set (see module docstring).

    min_scenes: scenes the design check requires (default config.min_eval_scenes; the real set, which
    has fewer evaluation scenes than that, requires all of its scenes)."""
    seeds = list(config.seeds)
    steps = [int(k) for k in config.steps]
    nb = len(config.budgets)
    if min_scenes is None:
        min_scenes = config.min_eval_scenes
    dropped = dict(cells.get("__errors__", {}))
    scenes = []
    for name in scene_names:
        if name in dropped:
            continue
        why = next((f"seed {s} {r}: {w}" for s in seeds for r in (CONTROL, config.treatment)
                    if (w := _complete(cells.get((s, r, name)), steps, nb)) is not None), None)
        if why is None:
            scenes.append(name)
        else:
            dropped[name] = why
    shape = (len(seeds), len(scenes))
    a = ClaimAnalysis(which, config, seeds, scenes, dropped, steps, list(config.budgets),
                      np.empty((*shape, len(steps))), np.empty((*shape, len(steps))),
                      np.empty((*shape, nb)), np.empty((*shape, nb)))
    if scenes:
        a.vanilla, a.vanilla_budget = _grid(cells, seeds, scenes, CONTROL, steps, nb)
        a.treatment, a.treatment_budget = _grid(cells, seeds, scenes, config.treatment, steps, nb)
        kw = dict(level=config.ci_level, n_boot=config.n_boot, seed=0)
        a.diff_steps = bootstrap_ci(paired_differences(a.treatment, a.vanilla), **kw)
        a.diff_budgets = bootstrap_ci(paired_differences(a.treatment_budget, a.vanilla_budget), **kw)
        a.vanilla_ci = bootstrap_ci(a.vanilla, **kw)
        a.treatment_ci = bootstrap_ci(a.treatment, **kw)
        a.match = bootstrap_steps_to_match(steps, a.treatment, a.vanilla, **kw)
        a.match_per_seed = {s: steps_to_match(steps, a.treatment[i].mean(0), a.vanilla[i].mean(0))
                            for i, s in enumerate(seeds)}
    a.claims = claims_of(a, min_scenes)
    a.verdict = verdict_text(a.claims, where=f"{which} scenes ({len(scenes)} scenes x {len(seeds)} seeds)")
    if scenes and a.claims[0].holds is None:  # the design claim: numbers exist, but too few of them
        a.verdict = a.verdict.rsplit("\n", 1)[0] + (
            f"\n  => NOT CHECKED: {len(scenes)} scenes x {len(seeds)} seeds is too small a design for a verdict "
            f"(need >= {min_scenes} x {config.min_seeds}); "
            "the lines above are for information only")
    a.pooled = pooled_report(a, cells)
    a.markdown = markdown(a)
    return a


def claims_of(a: ClaimAnalysis, min_scenes: int) -> list[Claim]:
    """The paper's claim checked against the analysis (never asserted); the design needs min_scenes scenes."""
    cfg = a.config
    last = a.steps[-1]
    lvl = f"{cfg.ci_level:.0%}"
    t = TREATMENT_LABELS[cfg.treatment]
    gain = f"{t} ends >= {cfg.min_gain:+.1f} dB above vanilla after {last} steps with the {lvl} CI above 0"
    match = f"{t} reaches vanilla's {last}-step PSNR within {cfg.match_within} steps"
    design = f"design: >= {min_scenes} scenes and >= {cfg.min_seeds} training seeds"
    n_j, n_s = len(a.scenes), len(a.seeds)
    if not a.scenes:
        why = f"no scene completed by every head ({len(a.dropped)} dropped)"
        return [Claim(design, None, why), Claim(gain, None, why), Claim(match, None, why)]
    big_enough = n_j >= min_scenes and n_s >= cfg.min_seeds
    claims = [Claim(design, True if big_enough else None,
                    f"{n_j} scenes x {n_s} seeds" + ("" if big_enough else ": too few for a verdict"))]
    d = a.diff_steps[-1]
    claims.append(Claim(gain, d.mean >= cfg.min_gain and d.above_zero,
                        f"{a.treatment[..., -1].mean():.2f} vs {a.vanilla[..., -1].mean():.2f} dB: "
                        f"{d.mean:+.2f} dB, CI [{d.low:+.2f}, {d.high:+.2f}]"))
    point, lo, hi = a.match
    ci = f"CI [{format_steps(lo)}, {format_steps(hi)}]"
    claims.append(Claim(match, point is not None and point <= cfg.match_within,
                        f"never within {last} steps ({ci})" if point is None else f"at step {point:.0f} ({ci})"))
    d0 = a.diff_steps[0]
    claims.append(Claim(f"{t} starts lower than vanilla at step 0 (paper's observation, not required)",
                        d0.mean < 0, f"{d0.mean:+.2f} dB, CI [{d0.low:+.2f}, {d0.high:+.2f}]", required=False))
    return claims


def format_steps(x: float | None) -> str:
    """A step count for the tables: "never" for None or a non-finite value."""
    return "never" if x is None or not math.isfinite(x) else f"{x:.0f}"


def pooled_report(a: ClaimAnalysis, cells: dict) -> EvalReport:
    """Every (scene, seed) pair as one scene of an EvalReport with methods vanilla / the treatment."""
    cfg = a.config
    rep = EvalReport(methods=[CONTROL, cfg.treatment], steps=a.steps, budgets=a.budgets, time_scale=cfg.time_scale,
                     reference=CONTROL, notes=[f"foresplat experiment claim, preset {cfg.name}, {a.which} scenes: "
                                               "each scene once per training seed"])
    for j in a.scenes:
        for s in a.seeds:
            mrs = [cells[(s, r, j)] for r in (CONTROL, cfg.treatment)]
            rep.scenes.append(SceneResult(f"{j} seed {s}", source=a.which, methods=mrs,
                                          num_context=cfg.num_context, num_target=cfg.num_target))
    return rep


def format_interval(i: Interval) -> str:
    """"+0.35 [+0.15, +0.59]": a mean and its CI in dB, signed."""
    return f"{i.mean:+.2f} [{i.low:+.2f}, {i.high:+.2f}]"


def _trained_part(cfg) -> str:
    """What the fine-tunes of a ClaimConfig train, in words."""
    if cfg.finetune_backbone:
        return "whole network"
    if cfg.head_outputs:
        return "head's last layer, outputs " + "/".join(cfg.head_outputs)
    return "head only"


def markdown(a: ClaimAnalysis) -> str:
    """claim.md: the paired table, steps to match, per-scene differences and the verdict."""
    cfg = a.config
    t = cfg.treatment
    out = [f"# Claim experiment ({cfg.name} preset): {a.which} scenes", "",
           f"{len(a.scenes)} scenes x {len(a.seeds)} training seeds {a.seeds}; fine-tunes of "
           f"{cfg.finetune_iterations} outer iterations each ({_trained_part(cfg)}, "
           f"lr {cfg.finetune_lr:g}, treatment {t}, lam {cfg.lam:g}, "
           f"K ~ U{{{cfg.k_min}..{cfg.k_max}}}, stride {cfg.stride}); {cfg.num_context} + {cfg.num_target} views; "
           f"{cfg.ci_level:.0%} bootstrap CIs ({cfg.n_boot} replicates, resampling scenes and seeds).", ""]
    if a.dropped:
        out += [f"Left out ({len(a.dropped)}): " + "; ".join(f"{k}: {v}" for k, v in a.dropped.items()), ""]
    if not a.scenes:
        return "\n".join(out + [a.verdict, ""])
    out += ["## PSNR (dB) after refinement steps: means and paired difference", "",
            "| | " + " | ".join(str(k) for k in a.steps) + " |", "|---" * (len(a.steps) + 1) + "|"]
    out.append("| vanilla | " + " | ".join(f"{i.mean:.2f}" for i in a.vanilla_ci) + " |")
    out.append(f"| {t} | " + " | ".join(f"{i.mean:.2f}" for i in a.treatment_ci) + " |")
    out.append(f"| {t} - vanilla [CI] | " + " | ".join(format_interval(i) for i in a.diff_steps) + " |")
    out.append("| scenes ahead | " + " | ".join(
        f"{int((a.treatment[..., x] - a.vanilla[..., x] > 0).sum())}/{a.vanilla[..., x].size}"
        for x in range(len(a.steps))) + " |")
    scale = f" x {cfg.time_scale:g}" if cfg.time_scale != 1 else ""
    out += ["", f"## PSNR (dB) after wall-clock budgets{scale}: paired difference", "",
            "| | " + " | ".join(f"+{b:g} s" for b in a.budgets) + " |", "|---" * (len(a.budgets) + 1) + "|",
            "| vanilla | " + " | ".join(f"{x:.2f}" for x in a.vanilla_budget.mean((0, 1))) + " |",
            f"| {t} | " + " | ".join(f"{x:.2f}" for x in a.treatment_budget.mean((0, 1))) + " |",
            f"| {t} - vanilla [CI] | " + " | ".join(format_interval(i) for i in a.diff_budgets) + " |", ""]
    point, lo, hi = a.match
    out += [f"## Steps for {t} to reach vanilla's final PSNR", "",
            f"pooled: {format_steps(point)} (CI [{format_steps(lo)}, {format_steps(hi)}]); per seed: "
            + ", ".join(f"seed {s}: {format_steps(v)}" for s, v in a.match_per_seed.items()), "",
            f"## Per scene: {t} - vanilla after {a.steps[-1]} steps (mean over seeds; per seed)", "",
            "| scene | mean | " + " | ".join(f"seed {s}" for s in a.seeds) + " |", "|---" * (len(a.seeds) + 2) + "|"]
    d = a.treatment[..., -1] - a.vanilla[..., -1]  # [S, J]
    for j, name in enumerate(a.scenes):
        out.append(f"| {name} | {d[:, j].mean():+.2f} | " + " | ".join(f"{x:+.2f}" for x in d[:, j]) + " |")
    return "\n".join(out + ["", a.verdict, ""])


def csv_text(a: ClaimAnalysis) -> str:
    """claim.csv, long format: one row per (seed, scene, axis, x) with both PSNRs and the difference."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["set", "seed", "scene", "axis", "x", "vanilla_psnr", f"{a.config.treatment}_psnr", "diff"])
    for axis, xs, v, m in (("step", a.steps, a.vanilla, a.treatment),
                           ("budget", a.budgets, a.vanilla_budget, a.treatment_budget)):
        for i, s in enumerate(a.seeds):
            for j, name in enumerate(a.scenes):
                for x, xv in enumerate(xs):
                    w.writerow([a.which, s, name, axis, xv, f"{v[i, j, x]:.6f}", f"{m[i, j, x]:.6f}",
                                f"{m[i, j, x] - v[i, j, x]:.6f}"])
    return buf.getvalue()


def json_document(a: ClaimAnalysis) -> dict:
    """claim.json: config, per-x intervals, steps to match, claims, verdict, and the raw grids."""
    return json_safe({
        "set": a.which, "config": asdict(a.config), "seeds": a.seeds, "scenes": a.scenes, "dropped": a.dropped,
        "steps": a.steps, "budgets": a.budgets,
        "diff_steps": [asdict(i) for i in a.diff_steps], "diff_budgets": [asdict(i) for i in a.diff_budgets],
        "vanilla_steps": [asdict(i) for i in a.vanilla_ci],
        f"{a.config.treatment}_steps": [asdict(i) for i in a.treatment_ci],
        "steps_to_match": None if a.match is None else {"estimate": a.match[0], "low": a.match[1],
                                                        "high": a.match[2], "null": "never within the steps"},
        "steps_to_match_per_seed": a.match_per_seed,
        "claims": [asdict(c) for c in a.claims], "verdict": a.verdict,
        "psnr": {"vanilla": a.vanilla.tolist(), a.config.treatment: a.treatment.tolist(),
                 "vanilla_budget": a.vanilla_budget.tolist(),
                 f"{a.config.treatment}_budget": a.treatment_budget.tolist()}})


def plot_ci(a: ClaimAnalysis, path: Path) -> Path | None:
    """PSNR vs steps of both heads with their CI bands (top) and the paired difference with its band (bottom)."""
    if not a.scenes:
        return None
    from foresplat.evaluate.plots import _legend_outside, _pyplot, _save

    plt = _pyplot()
    fig, (ax, dx) = plt.subplots(2, 1, figsize=(6.0, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    try:
        for name, ci in ((CONTROL, a.vanilla_ci), (a.config.treatment, a.treatment_ci)):
            line, = ax.plot(a.steps, [i.mean for i in ci], marker="o", label=name)
            ax.fill_between(a.steps, [i.low for i in ci], [i.high for i in ci], color=line.get_color(), alpha=0.2)
        ax.set_ylabel("PSNR on target views (dB)")
        ax.set_title(f"{a.which}: {len(a.scenes)} scenes x {len(a.seeds)} seeds, {a.config.ci_level:.0%} CI")
        ax.grid(True, alpha=0.3)
        _legend_outside(ax)
        dx.plot(a.steps, [i.mean for i in a.diff_steps], marker="o", color="k", label=f"{a.config.treatment} - vanilla")
        dx.fill_between(a.steps, [i.low for i in a.diff_steps], [i.high for i in a.diff_steps], color="k", alpha=0.15)
        dx.axhline(0.0, color="grey", lw=0.8)
        dx.axhline(a.config.min_gain, color="tab:red", lw=0.8, ls="--", label=f"claim {a.config.min_gain:+g} dB")
        dx.set_xlabel("refinement steps")
        dx.set_ylabel("paired difference (dB)")
        dx.grid(True, alpha=0.3)
        _legend_outside(dx)
        return _save(fig, path)
    finally:
        plt.close(fig)


def write_results(a: ClaimAnalysis, out_dir: Path) -> dict[str, Path]:
    """Writes the claim files and the pooled standard tables/plots into out_dir; returns their paths."""
    from foresplat.evaluate.plots import write_plots
    from foresplat.evaluate.tables import write_tables

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "claim.md", a.markdown)
    atomic_write_text(out / "claim.csv", csv_text(a))
    atomic_write_json(out / "claim.json", json_document(a))
    paths = {name: out / name for name in ("claim.md", "claim.csv", "claim.json")}
    plot = plot_ci(a, out / "psnr_vs_steps_ci.png")
    if plot is not None:
        paths["psnr_vs_steps_ci"] = plot
    if a.pooled is not None and a.pooled.scenes:
        paths.update({f"pooled {k}": v for k, v in write_tables(a.pooled, out).items()})
        paths.update({f"pooled {k}": v for k, v in write_plots(a.pooled, out).items()})
    return paths
