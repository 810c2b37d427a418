"""`polymm-backtest --sweep A=... --sweep B=... --heatmap FILE.png`: total P&L over a two-key sweep as a PNG (one
cell per point, the value written in it, the best point outlined). matplotlib is the optional extra `report`
(pip install 'polymm[report]'), as for polymm-report."""
from __future__ import annotations

from pathlib import Path


class HeatmapError(RuntimeError):
    pass


def write_heatmap(path: str | Path, x_key: str, x_values: tuple, y_key: str, y_values: tuple,
                  pnl: dict[tuple, float], title: str) -> None:
    """`pnl`: {(x value, y value): total P&L}. HeatmapError in words when matplotlib is missing or the file cannot
    be written."""
    try:
        import matplotlib
    except ImportError:
        raise HeatmapError("--heatmap needs matplotlib: pip install 'polymm[report]'") from None
    matplotlib.use("Agg")  # a file only: no display on a server
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    grid = [[pnl[(x, y)] for x in x_values] for y in y_values]
    flat = [v for row in grid for v in row]
    lo, hi = min(flat), max(flat)
    # Losses red, gains green, 0 white whatever the range (a grid of only gains or only losses keeps one colour).
    norm = TwoSlopeNorm(vcenter=0.0, vmin=min(lo, -1e-9), vmax=max(hi, 1e-9))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(x_values) + 2.5), max(3.5, 0.45 * len(y_values) + 2.0)))
    try:
        image = ax.imshow(grid, origin="lower", cmap="RdYlGn", norm=norm, aspect="auto")
        ax.set_xticks(range(len(x_values)), [f"{v:g}" for v in x_values], rotation=45 if len(x_values) > 8 else 0)
        ax.set_yticks(range(len(y_values)), [f"{v:g}" for v in y_values])
        ax.set_xlabel(x_key)
        ax.set_ylabel(y_key)
        ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=ax, label="total P&L (pUSD)")
        if len(flat) <= 400:
            for yi, row in enumerate(grid):
                for xi, v in enumerate(row):
                    ax.text(xi, yi, f"{v:+.2f}", ha="center", va="center", fontsize=7)
        best = max(((xi, yi) for yi in range(len(y_values)) for xi in range(len(x_values))),
                   key=lambda c: grid[c[1]][c[0]])
        ax.add_patch(plt.Rectangle((best[0] - 0.5, best[1] - 0.5), 1, 1, fill=False, lw=2, ec="black"))
        try:
            fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
        except OSError as e:
            raise HeatmapError(f"--heatmap {path}: cannot write: {e.strerror or e}") from None
    finally:
        plt.close(fig)
