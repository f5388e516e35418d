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


#: the soft term's label diagnostics shown per generation (see ``soft_label_stats``).
LABEL_STATS = ("soft/teacher_entropy", "soft/uniform_entropy", "soft/teacher_spread", "soft/agreement")


def label_table(generations: List[Dict[str, Any]]) -> List[str]:
    """Markdown rows for the generations trained with teacher labels: how informative the
    labels were (entropy against the uniform entropy of the same entries, the spread of
    the teacher's similarities) and how often the student's top region agreed."""
    rows = [g for g in generations if all(k in g.get("stats", {}) for k in LABEL_STATS)]
    if not rows:
        return []
    lines = ["| gen | teacher tau | label entropy (nats) | uniform entropy | entropy / uniform | "
             "teacher similarity spread | spread / tau | student-teacher argmax agreement |",
             "|---|---|---|---|---|---|---|---|"]
    for g in rows:
        st, tau = g["stats"], g.get("teacher_temperature") or float("nan")
        ratio = st["soft/teacher_entropy"] / st["soft/uniform_entropy"]
        lines.append(f"| {g['generation']} | {tau:g} | {st['soft/teacher_entropy']:.3f} | "
                     f"{st['soft/uniform_entropy']:.3f} | {ratio:.3f} | {st['soft/teacher_spread']:.3f} | "
                     f"{st['soft/teacher_spread'] / tau:.2f} | {st['soft/agreement']:.3f} |")
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
    labels = label_table(history.generations)
    if labels:
        lines += ["", "## Soft region labels (means over each generation's steps)", ""] + labels
    lines += ["", "## Per epoch (mean loss terms, validation)", ""] + epoch_table(history.epochs, ns)
    atomic_write_text(paths.results_md, "\n".join(lines) + "\n")
    return results
