"""The figures of a run report, as matplotlib figures (saved to PNG, and drawn again into
the PDF when one is asked for):

- ``generations.png``: Recall@1/5/10 per generation, validation and test; a sweep
  configuration or a group of seeds is its mean with a ± std band;
- ``epochs_val.png``: validation Recall@1/5/10 after every epoch, one line per run;
- ``losses.png``: the mean of each loss term per epoch, one line per run.

Epoch numbers run on across generations (a generation's epochs follow the previous
one's); dotted lines mark where a generation starts.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from sfrs.reports.run_entries import REPORT_NS, SPLITS, ReportEntry
from sfrs.reports.run_sources import RunFolder


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colour(index: int) -> Any:
    import matplotlib

    return matplotlib.colormaps["tab10"](index % 10)


def generations_figure(entries: Sequence[ReportEntry]) -> Optional[Any]:
    """Recall@N against the generation (rows val / test, columns N); None without generations."""
    shown = [(i, e) for i, e in enumerate(entries) if e.generations]
    if not shown:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(SPLITS), len(REPORT_NS), figsize=(4.2 * len(REPORT_NS), 3.4 * len(SPLITS)),
                             squeeze=False, sharex=True)
    for row, split in enumerate(SPLITS):
        for col, n in enumerate(REPORT_NS):
            ax = axes[row][col]
            for index, entry in shown:
                points = [(g["generation"], (g.get(split) or {}).get(n)) for g in entry.generations]
                points = [(x, s) for x, s in points if s and s.get("mean") is not None]
                if not points:
                    continue
                xs = [x for x, _ in points]
                means = [s["mean"] for _, s in points]
                ax.plot(xs, means, marker="o", color=_colour(index), label=entry.name)
                if any(s.get("std") is not None for _, s in points):
                    stds = [s.get("std") or 0.0 for _, s in points]
                    ax.fill_between(xs, [m - d for m, d in zip(means, stds)], [m + d for m, d in zip(means, stds)],
                                    color=_colour(index), alpha=0.2, linewidth=0)
            ax.set_title(f"{split} R@{n}")
            ax.grid(alpha=0.3)
            if row == len(SPLITS) - 1:
                ax.set_xlabel("generation")
            if col == 0:
                ax.set_ylabel("Recall@N (%)")
    axes[0][0].xaxis.get_major_locator().set_params(integer=True)
    _legend(fig, axes[0][-1])
    fig.tight_layout()
    return fig


def _runs(entries: Sequence[ReportEntry]) -> List[Tuple[int, str, RunFolder]]:
    """(colour index, label, run) of every run with at least one epoch."""
    found = []
    for index, entry in enumerate(entries):
        for run in entry.runs:
            if not run.results.get("epochs"):
                continue
            label = entry.name if len(entry.runs) == 1 else f"{entry.name} [{run.path.name}]"
            if not run.complete:
                label += " (incomplete)"
            found.append((index, label, run))
    return found


def _epoch_axis(epochs: List[Dict[str, Any]]) -> Tuple[List[int], List[int]]:
    """1-based running epoch numbers and the numbers where a new generation starts."""
    xs = list(range(1, len(epochs) + 1))
    starts = [x for x, previous, epoch in zip(xs[1:], epochs, epochs[1:])
              if epoch.get("generation") != previous.get("generation")]
    return xs, starts


def _mark_generations(ax: Any, starts: Sequence[int]) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for x in starts:
        ax.axvline(x - 0.5, color="grey", linestyle=":", linewidth=0.8)


def _epoch_panel(ax: Any, runs, record: str, key: str, title: str) -> None:
    """One panel: ``epoch[record][key]`` after every epoch, a line per run, generation
    boundaries marked (a missing value is a gap)."""
    starts: List[int] = []
    for index, label, run in runs:
        epochs = run.results["epochs"]
        xs, starts = _epoch_axis(epochs)
        ax.plot(xs, [(e.get(record) or {}).get(key, float("nan")) for e in epochs], marker=".",
                color=_colour(index), alpha=0.8, label=label)
    _mark_generations(ax, starts)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def epochs_figure(entries: Sequence[ReportEntry]) -> Optional[Any]:
    """Validation Recall@1/5/10 after every epoch, one line per run; None without epochs."""
    runs = _runs(entries)
    if not runs:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(REPORT_NS), figsize=(4.2 * len(REPORT_NS), 3.4), squeeze=False)
    for col, n in enumerate(REPORT_NS):
        _epoch_panel(axes[0][col], runs, "val", n, f"val R@{n} per epoch")
    axes[0][0].set_ylabel("Recall@N (%)")
    _legend(fig, axes[0][-1])
    fig.tight_layout()
    return fig


def losses_figure(entries: Sequence[ReportEntry]) -> Optional[Any]:
    """Mean loss per epoch, one panel per term (and ``total``); None without epochs."""
    runs = _runs(entries)
    terms: List[str] = []
    for _, _, run in runs:
        for epoch in run.results["epochs"]:
            terms += [t for t in (epoch.get("losses") or {}) if t not in terms]
    if "total" in terms:  # the sum of the others: last
        terms.remove("total")
        terms.append("total")
    if not terms:
        return None
    plt = _pyplot()
    columns = min(3, len(terms))
    rows = -(-len(terms) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for i, term in enumerate(terms):
        _epoch_panel(axes[i // columns][i % columns], runs, "losses", term, f"loss: {term}")
    for j in range(len(terms), rows * columns):
        axes[j // columns][j % columns].set_visible(False)
    _legend(fig, axes[0][min(columns, len(terms)) - 1])
    fig.tight_layout()
    return fig


def _legend(fig: Any, ax: Any) -> None:
    handles, labels = [], []
    for axis in fig.axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if labels:
        ax.legend(handles, labels, fontsize=7, loc="best")


#: figure file name -> the function drawing it, in report order
FIGURES = (
    ("generations.png", generations_figure),
    ("epochs_val.png", epochs_figure),
    ("losses.png", losses_figure),
)
