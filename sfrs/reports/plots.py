"""The cross-dataset report as figures: ``recall_at_n.png`` (Recall@N curves, one line per
data set) and ``r1_vs_published.png`` (our R@1 next to the published numbers).

matplotlib is imported inside the functions, with the Agg backend: it is needed only when
a report is written, and never opens a window.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sfrs.reports.published import (
    PUBLISHED_APPROXIMATE,
    PUBLISHED_R1,
    PUBLISHED_SOURCE,
    PUBLISHED_UNSOURCED,
    VERSION_CAVEAT,
    VERSION_DEPENDENT,
)
from sfrs.reports.summary import EvalAllSummary
from sfrs.utils.io import atomic_path


def plot_recall_curves(path: Path, summary: EvalAllSummary) -> None:
    """recall_at_n.png: Recall@N against N, one line per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, report in summary.results.items():
        ns = [int(n) for n in report["recall"]]
        ax.plot(ns, list(report["recall"].values()), marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks([1, 5, 10, 20])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("N")
    ax.set_ylabel("Recall@N (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    if summary.results:
        ax.legend(fontsize=8)
    ax.set_title(f"Recall@N - {Path(summary.checkpoint).name}")
    _save_figure(fig, path)


def plot_published_comparison(path: Path, summary: EvalAllSummary) -> None:
    """r1_vs_published.png: our R@1 per data set next to :data:`PUBLISHED_R1`; approximate
    published values are labelled ``~``, unsourced ones hatched and labelled ``?``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(summary.results)
    methods = [m for m in PUBLISHED_R1 if any(n in PUBLISHED_R1[m] for n in names)]
    series = [("ours", [summary.results[n]["recall"].get("1", 0.0) for n in names])]
    series += [(m, [PUBLISHED_R1[m].get(n, np.nan) for n in names]) for m in methods]
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.4 * len(names) + 2) + 3.2, 4.6))
    x = np.arange(len(names))
    for i, (label, values) in enumerate(series):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
        if i == 0:
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
            continue
        marks = []
        for bar, name in zip(bars, names):
            unsourced = (label, name) in PUBLISHED_UNSOURCED
            if unsourced:
                bar.set_hatch("//")
            marks.append(("~" if (label, name) in PUBLISHED_APPROXIMATE else "") + ("?" if unsourced else ""))
        ax.bar_label(bars, labels=marks, fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{n}*" if n in VERSION_DEPENDENT else n for n in names])
    ax.set_ylabel("Recall@1 (%)")
    ax.set_ylim(0, 105)
    # Outside the axes: inside, the legend hides the tallest bars.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("R@1: ours vs published")
    fig.text(0.01, 0.01, f"* {VERSION_CAVEAT}\nPublished numbers: {PUBLISHED_SOURCE}. "
             "~ approximate (read from a chart); ? hatched: unsourced (not in the method's paper).",
             fontsize=6, va="bottom", wrap=True)
    fig.subplots_adjust(bottom=0.2, right=0.68)
    _save_figure(fig, path)


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
