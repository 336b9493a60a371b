"""Readable evaluation plots: the seconds axis has plain tick labels at the budgets, legends sit outside the data."""

from __future__ import annotations

import pytest

from foresplat.evaluate import plots


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures the plot functions save (kept open for inspection)."""
    saved = []

    def keep(fig, path):
        fig.canvas.draw()
        saved.append((path.name, fig, [(t.get_text(), t.get_position()[0]) for t in fig.axes[0].get_xticklabels()],
                      [t.get_text() for t in fig.axes[0].get_xticklabels(minor=True) if t.get_text()],
                      fig.axes[0].get_window_extent(), fig.axes[0].get_legend().get_window_extent()))
        return path

    monkeypatch.setattr(plots, "_save", keep)
    return saved


def test_seconds_axis_and_legends(figures, tmp_path):
    from test_eval_report import _report  # the hand-made report of the report tests

    report = _report()
    plots.write_plots(report, tmp_path)
    by_name = {name: rest for name, *rest in figures}
    assert set(by_name) == {"psnr_vs_steps.png", "psnr_vs_seconds.png"}
    _, major, minor, _, _ = by_name["psnr_vs_seconds.png"]
    budgets = sorted({b.nominal * report.time_scale for s in report.ok_scenes() for m in s.methods for b in m.budgets})
    assert [pos for _, pos in major] == pytest.approx(budgets)
    assert [text for text, _ in major] == [f"{b:g}" for b in budgets]  # plain numbers, no 6x10^-1
    assert all("10^" not in t and "times" not in t for t, _ in major) and minor == []
    for name, (fig, _, _, axes_box, legend_box) in by_name.items():
        assert legend_box.x0 >= axes_box.x1, f"{name}: the legend overlaps the axes"
