"""results.json and results.md of a training run: per generation and per epoch, one
column per loss term present."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Sequence

from sfrs.config import to_dict
from sfrs.utils.io import atomic_write_json, atomic_write_text


def generation_table(generations: List[Dict[str, Any]], ns: Sequence[str] = ("1", "5", "10")) -> List[str]:
    """Markdown rows: generation, schedule, val and test Recall@N, time."""
    header = "| gen | epochs | soft weight | " + " | ".join(f"val R@{n}" for n in ns) + " | " + \
        " | ".join(f"test R@{n}" for n in ns) + " | time (s) |"
    lines = [header, "|" + "---|" * (4 + 2 * len(ns))]
    for gen in generations:
        val = " | ".join(f"{gen['val'][n]:.1f}" for n in ns)
        test = " | ".join(f"{gen['test'][n]:.1f}" for n in ns)
        lines.append(f"| {gen['generation']} | {gen['epochs']} | {gen['soft_weight']:g} | {val} | {test} | {gen['seconds']:.0f} |")
    return lines


def epoch_table(epochs: List[Dict[str, Any]], ns: Sequence[str] = ("1", "5", "10")) -> List[str]:
    """Markdown rows: one per epoch, the mean of each loss term present in any epoch."""
    terms: List[str] = []
    for e in epochs:
        terms += [name for name in e["losses"] if name not in terms and name != "total"]
    columns = terms + ["total"]
    lines = ["| gen | epoch | steps | " + " | ".join(columns) + " | " + " | ".join(f"val R@{n}" for n in ns) + " | time (s) |",
             "|" + "---|" * (4 + len(columns) + len(ns))]
    for e in epochs:
        losses = " | ".join(f"{e['losses'][c]:.4f}" if c in e["losses"] else "-" for c in columns)
        recall = " | ".join(f"{e['val'][n]:.1f}" for n in ns)
        lines.append(f"| {e['generation']} | {e['epoch']} | {e['steps']} | {losses} | {recall} | {e['seconds']:.0f} |")
    return lines


def write_results(run, history, final: bool) -> Dict[str, Any]:
    config, paths = run.config, run.paths
    ns = run.recall_keys[:3]
    results = {"run": str(paths.root), "complete": final, "dataset": config.data.dataset,
               **dataclasses.asdict(history), "config": to_dict(config)}
    atomic_write_json(paths.results_json, results)
    lines = [f"# SFRS training run `{paths.root}`", "",
             f"Data: `{config.data.dataset}`; model {config.model.backbone} + {config.model.head}; "
             f"{'complete' if final else 'in progress'}; {history.seconds / 60:.1f} min of training and evaluation.", "",
             "## Per generation (final model of each generation)", ""]
    lines += generation_table(history.generations, ns)
    best = history.best
    if best:
        recall = ", ".join(f"R@{n} {best['val'][n]:.1f}" for n in ns)
        lines += ["", f"Best on {best['metric']}: generation {best['generation']}, epoch {best['epoch']} "
                  f"(val {recall}) -> `best.pt`"]
        if "test" in best:
            test = ", ".join(f"R@{n} {best['test'][n]:.1f}" for n in ns)
            lines += ["", f"`best.pt` on {config.train.test_split}: {test}"]
        if "test_pca" in best:
            whitened = best["test_pca"]
            test = ", ".join(f"R@{n} {whitened['recall'][n]:.1f}" for n in ns)
            lines += ["", f"`best.pt` PCA-whitened to {whitened['dim']}-d (fitted on the training split, "
                          f"`{Path(whitened['model']).name}`) on {config.train.test_split}: {test}"]
    lines += ["", "## Per epoch (mean loss terms, validation)", ""] + epoch_table(history.epochs, ns)
    atomic_write_text(paths.results_md, "\n".join(lines) + "\n")
    return results
