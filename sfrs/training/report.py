"""results.json and results.md of a training run: per generation and per epoch."""
from __future__ import annotations

from typing import Any, Dict, List

from sfrs.config import Config, to_dict
from sfrs.training.checkpoint import RunPaths
from sfrs.utils.io import atomic_write_json, atomic_write_text


def generation_table(generations: List[Dict[str, Any]], ns=("1", "5", "10")) -> List[str]:
    """Markdown rows: generation, schedule, val and test Recall@N, time."""
    header = "| gen | epochs | soft weight | " + " | ".join(f"val R@{n}" for n in ns) + " | " + \
        " | ".join(f"test R@{n}" for n in ns) + " | time (s) |"
    lines = [header, "|" + "---|" * (4 + 2 * len(ns))]
    for gen in generations:
        val = " | ".join(f"{gen['val'][n]:.1f}" for n in ns)
        test = " | ".join(f"{gen['test'][n]:.1f}" for n in ns)
        lines.append(f"| {gen['generation']} | {gen['epochs']} | {gen['soft_weight']:g} | {val} | {test} | {gen['seconds']:.0f} |")
    return lines


def write_results(paths: RunPaths, config: Config, history: Dict[str, Any], final: bool) -> Dict[str, Any]:
    results = {
        "run": str(paths.root),
        "complete": final,
        "dataset": config.data.dataset,
        "generations": history["generations"],
        "epochs": history["epochs"],
        "best": history["best"],
        "seconds": history["seconds"],
        "config": to_dict(config),
    }
    atomic_write_json(paths.results_json, results)
    lines = [f"# SFRS training run `{paths.root}`", "",
             f"Data: `{config.data.dataset}`; model {config.model.backbone} + {config.model.head}; "
             f"{'complete' if final else 'in progress'}; {history['seconds'] / 60:.1f} min of training and evaluation.", "",
             "## Per generation (final model of each generation)", ""]
    lines += generation_table(history["generations"])
    best = history["best"]
    if best:
        lines += ["", f"Best on {best['metric']}: generation {best['generation']}, epoch {best['epoch']} "
                  f"(val R@1 {best['val']['1']:.1f}, R@5 {best['val']['5']:.1f}) -> `best.pt`"]
    lines += ["", "## Per epoch (validation)", "", "| gen | epoch | steps | hard | soft | val R@1 | val R@5 | val R@10 | time (s) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for e in history["epochs"]:
        losses = e["losses"]
        soft = f"{losses['soft']:.4f}" if "soft" in losses else "-"
        lines.append(f"| {e['generation']} | {e['epoch']} | {e['steps']} | {losses.get('hard', float('nan')):.4f} | {soft} | "
                     f"{e['val']['1']:.1f} | {e['val']['5']:.1f} | {e['val']['10']:.1f} | {e['seconds']:.0f} |")
    atomic_write_text(paths.results_md, "\n".join(lines) + "\n")
    return results
