"""polymm-report's plots read well at any size (issue 22, item 3): every point has a marker, the axes fit the data
(a one-window ledger spans about a window, not years; a bar chart's axis runs over its bars), and a long ledger
still draws."""
from __future__ import annotations

from datetime import timezone

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from polymm.ctl import report  # noqa: E402
from polymm.trader.ledger import load_entries, load_history  # noqa: E402
from tests.support.ledger import images_of, synthetic_ledger  # noqa: E402

WINDOW_S = 900
START = 1_795_000_000 - 1_795_000_000 % WINDOW_S


def run_of(tmp_path, windows: int) -> report.Run:
    path = tmp_path / f"l{windows}.sqlite"
    synthetic_ledger(path, windows, START, window_s=WINDOW_S, seed=3)
    return report.Run(path.name, load_history(path, "window"), load_entries(path))


def x_span_s(ax) -> float:
    lo, hi = ax.get_xlim()
    return (mdates.num2date(hi, tz=timezone.utc) - mdates.num2date(lo, tz=timezone.utc)).total_seconds()


@pytest.mark.parametrize("windows", [1, 2, 3, 150])
def test_cumulative_curve_has_markers_and_axes_fitted_to_the_data(tmp_path, windows):
    run = run_of(tmp_path, windows)
    fig, ax = plt.subplots()
    report._cumulative(ax, [run], "net")
    line = ax.lines[0]
    assert line.get_marker() == "o" and line.get_markersize() > 0
    assert len(line.get_xdata()) == windows
    # x: from the first window to the last with half a window (or 3% of the span) each side, never years
    span = (windows - 1) * WINDOW_S
    assert span + WINDOW_S * 0.99 <= x_span_s(ax) <= max(span * 1.07, span + WINDOW_S) + 1
    # y: every point and zero inside, with room around them
    values = list(line.get_ydata())
    low, high = ax.get_ylim()
    assert low < min(0, *values) and high > max(0, *values)
    assert high - low <= (max(0, *values) - min(0, *values) or 1) * 1.3
    plt.close(fig)


@pytest.mark.parametrize("windows", [1, 3, 150])
def test_net_per_window_bars_fill_an_axis_fitted_to_them(tmp_path, windows):
    run = run_of(tmp_path, windows)
    fig, ax = plt.subplots()
    report._net_bars(ax, run)
    lo, hi = ax.get_xlim()
    # every window is on the axis, and the axis is about as wide as the windows (at least five bars' room)
    assert lo < 0 and hi > windows - 1 and hi - lo <= max(windows, 5) * 1.05
    if windows <= 12:
        assert [t.get_text() for t in ax.get_xticklabels()] == [r.label[11:16] for r in run.history.windows]
    nets = [r.net for r in run.history.windows]
    low, high = ax.get_ylim()
    assert low < min(0, *nets) and high > max(0, *nets)
    plt.close(fig)


def test_the_report_renders_for_one_window_and_for_many(tmp_path):
    for windows in (1, 400):
        path = tmp_path / f"r{windows}.sqlite"
        synthetic_ledger(path, windows, START, window_s=60, seed=1)
        out = tmp_path / f"r{windows}.html"
        assert report.main(["--ledger", str(path), "--out", str(out)]) == 0
        assert len(images_of(out)) == 4
