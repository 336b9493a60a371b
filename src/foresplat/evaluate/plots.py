"""Plots of an evaluation (matplotlib, Agg backend): mean PSNR versus refinement steps and versus seconds.

One PNG each, one line per method, mean over the scenes every method completed. Written atomically.
"""

from __future__ import annotations

from pathlib import Path

from foresplat.evaluate.derived import mean_curves
from foresplat.evaluate.results import EvalReport
from foresplat.io.atomic import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _legend_outside(ax) -> None:
    """The legend to the right of the axes (never over the data); _save's tight bbox keeps it in the PNG."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def _plain_log_ticks(ax, values) -> None:
    """A log x axis labelled at `values` in plain numbers (0.5, 1, 2, 10), without minor-tick labels
    (matplotlib's default writes 6x10^-1, 2x10^0 on short log ranges)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    ticks = sorted({float(v) for v in values if v > 0})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _save(fig, path: Path) -> Path:
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    return path


def plot_psnr_vs_steps(report: EvalReport, path: str | Path) -> Path | None:
    """Mean PSNR [dB] over refinement steps, one line per method; None if no scene completed."""
    curves = mean_curves(report)
    if not report.ok_scenes():
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    try:
        for name in report.methods:
            pts = sorted(curves[name].steps.items())
            if pts:
                ax.plot([k for k, _ in pts], [v["psnr"] for _, v in pts], marker="o", label=name)
        ax.set_xlabel("refinement steps")
        ax.set_ylabel("PSNR on target views (dB)")
        ax.set_title(f"PSNR vs steps (mean over {len(report.ok_scenes())} scenes)")
        ax.grid(True, alpha=0.3)
        _legend_outside(ax)
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_psnr_vs_seconds(report: EvalReport, path: str | Path) -> Path | None:
    """Mean PSNR [dB] at the last step within each wall-clock budget, one line per method.

    x = the budget in seconds of refinement (after time_scale, log axis); hollow markers: on some
    scene the whole refinement run ended within the budget (its final state is shown).
    """
    curves = mean_curves(report)
    if not report.ok_scenes():
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    try:
        labelled = False
        all_xs: list[float] = []
        for name in report.methods:
            pts = sorted(curves[name].budgets.items())
            if not pts:
                continue
            xs = [nominal * report.time_scale for nominal, _ in pts]
            ys = [row["psnr"] for _, row in pts]
            all_xs += xs
            line, = ax.plot(xs, ys, marker="o", label=name)
            hollow = [(x, y) for x, y, (_, row) in zip(xs, ys, pts) if (row.get("exhausted") or 0) > 0]
            if hollow:  # the run ended inside the budget on some scene: the final state is shown
                ax.plot(*zip(*hollow), linestyle="none", marker="o", markersize=9, markerfacecolor="white",
                        color=line.get_color(), label=None if labelled else "run ended before budget")
                labelled = True
        ax.set_xscale("log")
        _plain_log_ticks(ax, all_xs)
        scale = f" (budgets x {report.time_scale:g})" if report.time_scale != 1 else ""
        ax.set_xlabel(f"refinement wall-clock seconds{scale}")
        ax.set_ylabel("PSNR on target views (dB)")
        ax.set_title(f"PSNR vs seconds (mean over {len(report.ok_scenes())} scenes)")
        ax.grid(True, alpha=0.3)
        _legend_outside(ax)
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def write_plots(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    """Writes psnr_vs_steps.png and psnr_vs_seconds.png into out_dir; returns the paths written."""
    out = Path(out_dir)
    paths = {}
    for key, fn in (("psnr_vs_steps", plot_psnr_vs_steps), ("psnr_vs_seconds", plot_psnr_vs_seconds)):
        p = fn(report, out / f"{key}.png")
        if p is not None:
            paths[key] = p
    return paths
