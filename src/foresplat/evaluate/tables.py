"""Tables of an evaluation: Markdown (for people), CSV (long format, for spreadsheets) and JSON (everything).

All three are built from an `EvalReport` alone; `write_tables` writes them atomically.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path

from foresplat.evaluate.derived import Derived, MeanCurves, derived_figures, is_finite, mean_curves
from foresplat.evaluate.results import EvalReport, json_safe
from foresplat.io.atomic import atomic_write_json, atomic_write_text

CSV_COLUMNS = ("scene", "method", "axis", "x", "step", "seconds", "exhausted", "psnr", "ssim", "lpips",
               "predict_seconds", "num_gaussians", "error")


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if not is_finite(x) else f"{x:.{digits}f}"


def _budget_label(nominal: float) -> str:
    return f"+{nominal:g} s"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _mean_section(report: EvalReport, curves: dict[str, MeanCurves], derived: list[Derived]) -> list[str]:
    ok = report.ok_scenes()
    out = [f"## Mean over {len(ok)} scene(s)", ""]
    if not ok:
        return out + ["No scene was evaluated successfully by every method.", ""]
    steps = report.steps
    for metric, title, digits in (("psnr", "PSNR (dB, higher is better)", 2), ("ssim", "SSIM (higher is better)", 4),
                                  ("lpips", "LPIPS (lower is better)", 4)):
        if metric == "lpips" and not report.lpips_computed:
            out += [report.lpips_note, ""]
            continue
        out += [f"### {title} after refinement steps", ""]
        rows = [[name] + [_f(curves[name].steps.get(k, {}).get(metric), digits) for k in steps]
                for name in report.methods]
        out += _md_table(["method"] + [str(k) for k in steps], rows) + [""]
    scale = f" x time_scale {report.time_scale:g}" if report.time_scale != 1 else ""
    out += [f"### PSNR (dB) after wall-clock refinement budgets{scale}", "",
            "Each cell: mean PSNR at the last step within the budget, (mean step reached). `*`: on some scene the "
            "whole refinement run fit in the budget (the final state is shown); `~`: on some scene the exact state "
            "was not kept and the nearest earlier one is shown (see Notes). Budgets count refinement time "
            "only; the initialisation (prediction) time is its own column.", ""]
    rows = []
    for name in report.methods:
        mc = curves[name]
        cells = [name, _f(mc.predict_seconds, 3)]
        for nominal in report.budgets:
            b = mc.budgets.get(float(nominal))
            if b is None:
                cells.append("-")
            else:
                star = "*" if (b.get("exhausted") or 0) > 0 else ""
                star += "~" if (b.get("approx") or 0) > 0 else ""
                cells.append(f"{_f(b['psnr'])} ({b['step']:.0f}){star}")
        rows.append(cells)
    out += _md_table(["method", "init s"] + [_budget_label(b) for b in report.budgets], rows) + [""]
    if derived:
        ref = derived[0]
        out += [f"### Derived figures (reference: {ref.reference}, final PSNR {_f(ref.reference_final_psnr)} dB "
                f"after {steps[-1]} steps)", ""]
        rows = []
        for d in derived:
            reach = "never" if d.steps_to_reference_final is None else f"{d.steps_to_reference_final:.0f}"
            frac = "-" if d.fraction_of_steps is None else f"{d.fraction_of_steps:.2f}"
            rows.append([d.method, reach, frac, f"{d.final_gain:+.2f}",
                         f"{d.peak_gain:+.2f} (step {d.peak_gain_step})"])
        out += _md_table(["method", f"steps to reach {ref.reference}'s final PSNR", f"fraction of {steps[-1]}",
                          "final gain (dB)", "peak gain (dB)"], rows) + [""]
    return out


def _scene_section(report: EvalReport) -> list[str]:
    out = ["## Per scene", ""]
    steps, last = report.steps, report.steps[-1]
    header = (["scene", "method"] + [f"PSNR@{k}" for k in steps] + [f"SSIM@{last}"]
              + ([f"LPIPS@{last}"] if report.lpips_computed else [])
              + [f"PSNR {_budget_label(b)}" for b in report.budgets] + ["init s", "N", "alpha@0"])
    rows, errors = [], []
    for s in report.scenes:
        if s.error is not None:
            errors.append(f"- {s.scene}: ERROR {s.error}")
            continue
        for m in s.methods:
            if not m.ok:
                errors.append(f"- {s.scene} / {m.method}: ERROR {m.error}")
                continue
            q_last = m.steps.get(last)
            row = [s.scene, m.method] + [_f(m.steps[k].psnr) if k in m.steps else "-" for k in steps]
            row.append(_f(q_last.ssim if q_last else None, 4))
            if report.lpips_computed:
                row.append(_f(q_last.lpips if q_last else None, 4))
            for b in m.budgets:
                row.append(f"{_f(b.quality.psnr if b.quality else None)} ({b.step}){'*' if b.exhausted else ''}"
                           f"{'' if b.exact else '~'}")
            row += [_f(m.predict_seconds, 3), str(m.num_gaussians), _f(m.target_alpha, 2)]
            rows.append(row)
    if rows:
        out += _md_table(header, rows) + [""]
    if errors:
        out += ["Errors (these scenes/methods are left out of the means):", ""] + errors + [""]
    return out


def markdown_table(report: EvalReport) -> str:
    """The whole report as Markdown: mean tables, derived figures, per-scene table, errors, notes."""
    curves = mean_curves(report)
    derived = derived_figures(curves, report.reference) if report.reference else []
    n_ok, n_all = len(report.ok_scenes()), len(report.scenes)
    head = ["# foresplat evaluation", "",
            f"{n_all} scene(s), {n_ok} evaluated by every method; methods: {', '.join(report.methods)}; "
            f"steps {', '.join(map(str, report.steps))}; budgets "
            f"{', '.join(_budget_label(b) for b in report.budgets)} (time_scale {report.time_scale:g}).",
            report.lpips_note, ""]
    notes = (["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]) if report.notes else []
    return "\n".join(head + _mean_section(report, curves, derived) + _scene_section(report) + notes)


def csv_table(report: EvalReport) -> str:
    """Long-format CSV: one row per (scene or "mean", method, axis in {steps, seconds}, x); errors as rows."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)

    def num(x, digits=6):
        return "" if not is_finite(x) else f"{x:.{digits}f}"

    for s in report.scenes:
        if s.error is not None:
            w.writerow([s.scene, "", "", "", "", "", "", "", "", "", "", "", s.error])
            continue
        for m in s.methods:
            if not m.ok:
                w.writerow([s.scene, m.method, "", "", "", "", "", "", "", "", "", "", m.error])
                continue
            for k, q in sorted(m.steps.items()):
                w.writerow([s.scene, m.method, "steps", k, k, "", "", num(q.psnr), num(q.ssim), num(q.lpips),
                            num(m.predict_seconds), m.num_gaussians, ""])
            for b in m.budgets:
                q = b.quality
                w.writerow([s.scene, m.method, "seconds", f"{b.nominal:g}", b.step, num(b.seconds), int(b.exhausted),
                            num(q.psnr if q else None), num(q.ssim if q else None), num(q.lpips if q else None),
                            num(m.predict_seconds), m.num_gaussians, ""])
    for name, mc in mean_curves(report).items():
        for k, row in sorted(mc.steps.items()):
            w.writerow(["mean", name, "steps", k, k, "", "", num(row["psnr"]), num(row["ssim"]), num(row["lpips"]),
                        num(mc.predict_seconds), num(mc.num_gaussians, 1), ""])
        for nominal, row in mc.budgets.items():
            w.writerow(["mean", name, "seconds", f"{nominal:g}", num(row["step"], 2), num(row["seconds"]),
                        num(row["exhausted"], 3), num(row["psnr"]), num(row["ssim"]), num(row["lpips"]),
                        num(mc.predict_seconds), num(mc.num_gaussians, 1), ""])
    return buf.getvalue()


def json_document(report: EvalReport) -> dict:
    """The report plus its mean curves and derived figures, JSON-safe."""
    curves = mean_curves(report)
    derived = derived_figures(curves, report.reference) if report.reference else []
    doc = report.to_dict()
    doc["mean"] = {name: {"num_scenes": mc.num_scenes, "predict_seconds": mc.predict_seconds,
                          "refine_seconds": mc.refine_seconds, "num_gaussians": mc.num_gaussians,
                          "steps": {str(k): v for k, v in mc.steps.items()},
                          "budgets": {f"{b:g}": v for b, v in mc.budgets.items()}}
                   for name, mc in curves.items()}
    doc["derived"] = [asdict(d) for d in derived]
    return json_safe(doc)


def write_tables(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    """Writes results.md, results.csv and results.json into out_dir (atomically); returns their paths."""
    out = Path(out_dir)
    paths = {"markdown": out / "results.md", "csv": out / "results.csv", "json": out / "results.json"}
    atomic_write_text(paths["markdown"], markdown_table(report))
    atomic_write_text(paths["csv"], csv_table(report))
    atomic_write_json(paths["json"], json_document(report))
    return paths
