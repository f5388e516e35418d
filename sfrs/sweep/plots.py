"""A sweep's figures (PNG, matplotlib's Agg backend), from its summary:

- ``generations_r1.png``: Recall@1 per generation, one mean line per configuration with a
  ± std band, validation and test panels;
- ``r1_vs_<key>.png`` for every varied key: final-generation Recall@1 (validation and test
  panels) against the key's values, error bars ± std; one series per combination of the
  other varied keys. Numbers are placed on a numeric axis (logarithmic when positive and
  spanning a decade or more), anything else as categories in grid order.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Sequence

from sfrs.sweep.grid import format_value
from sfrs.utils.io import atomic_path

SPLITS = ("val", "test")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_name(key: str) -> str:
    """``r1_vs_<key>.png`` with the key's unsafe characters replaced (``*`` -> ``_``)."""
    return "r1_vs_" + re.sub(r"[^A-Za-z0-9._-]", "_", key) + ".png"


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight")


def _std(stat: Dict[str, Any]) -> float:
    return stat["std"] if stat.get("std") is not None else 0.0


def plot_generations(summary: Dict[str, Any], path: Path) -> bool:
    """``generations_r1.png``; False (nothing drawn) when no configuration has finished runs."""
    configurations = [c for c in summary["configurations"] if c["finished"] and c["generations"]]
    if not configurations:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, split in zip(axes, SPLITS):
        for index, c in enumerate(configurations):
            points = [(g["generation"], g[split]["1"]) for g in c["generations"] if g[split]["1"]["mean"] is not None]
            if not points:
                continue
            xs = [x for x, _ in points]
            means = [s["mean"] for _, s in points]
            stds = [_std(s) for _, s in points]
            colour = f"C{index % 10}"
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, color=colour,
                        label=f"{c['name']} (n={c['finished']})")
            ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=colour, alpha=0.2)
        ax.set_title(f"{split} R@1")
        ax.set_xlabel("generation")
        ax.set_xticks(range(max(len(c["generations"]) for c in configurations)))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Recall@1 (%)")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside: never over a curve
    fig.suptitle("Recall@1 per generation (mean ± std over seeds)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot_key(summary: Dict[str, Any], key: str, path: Path) -> bool:
    """``r1_vs_<key>.png``; False when no configuration has finished runs."""
    configurations = [c for c in summary["configurations"] if c["finished"]]
    if not configurations:
        return False
    values: List[Any] = []
    for c in summary["configurations"]:
        if c["values"].get(key) not in values:
            values.append(c["values"].get(key))
    numeric = _numeric(values)
    others = [k for k in summary["varied"] if k != key]
    series: Dict[str, List[Dict[str, Any]]] = {}
    for c in configurations:
        label = ",".join(f"{k}={format_value(c['values'].get(k))}" for k in others) or "R@1"
        series.setdefault(label, []).append(c)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, split in zip(axes, SPLITS):
        for index, (label, members) in enumerate(series.items()):
            members = sorted(members, key=lambda c: values.index(c["values"].get(key)))
            xs = [c["values"][key] if numeric else values.index(c["values"].get(key)) for c in members]
            stats = [c["final"][split]["1"] for c in members]
            # several series on one category: shifted apart so their bars stay readable
            shift = 0.0 if numeric or len(series) == 1 else (index - (len(series) - 1) / 2) * 0.08
            ax.errorbar([x + shift for x in xs], [s["mean"] for s in stats], yerr=[_std(s) for s in stats],
                        marker="o", capsize=4, color=f"C{index % 10}", label=label)
        if numeric:
            positive = [v for v in values if v > 0]
            if len(positive) == len(values) and max(positive) / min(positive) >= 10:
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(values)))
            ax.set_xticklabels([format_value(v) for v in values], rotation=30, ha="right")
        ax.set_title(f"final {split} R@1")
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Recall@1 (%)")
    if len(series) > 1:
        axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"Final-generation Recall@1 against {key} (mean ± std over seeds)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def plot_summary(summary: Dict[str, Any], folder: Path) -> List[str]:
    """Every figure of the sweep into ``folder``; the names of those drawn."""
    drawn = []
    if plot_generations(summary, folder / "generations_r1.png"):
        drawn.append("generations_r1.png")
    for key in summary["varied"]:
        name = figure_name(key)
        if plot_key(summary, key, folder / name):
            drawn.append(name)
    return drawn
