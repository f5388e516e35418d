"""results.json and results.md of an adaptation: recall and AP before / after per
evaluation task, pseudo-label count and precision per step."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from sfrs.utils.io import atomic_write_json, atomic_write_text


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def _change(before: Optional[float], after: Optional[float]) -> str:
    if before is None or after is None:
        return f"{_percent(before)} -> {_percent(after)}"
    return f"{before:.1f} -> {after:.1f} ({after - before:+.1f})"


def evaluation_table(evaluations: List[Dict[str, Any]], ns: Sequence[str]) -> List[str]:
    """Markdown rows: one per task, each metric as ``before -> after (change)``."""
    header = "| evaluation | queries | database | " + " | ".join(f"R@{n}" for n in ns) + " | AP |"
    lines = [header, "|" + "---|" * (4 + len(ns))]
    for task in evaluations:
        before, after = task["before"], task["after"]
        cells = [_change(before["recall"].get(n), after["recall"].get(n)) for n in ns]
        cells.append(_change(before["ap"], after["ap"]))
        lines.append(f"| {task['name']} | {before['num_queries']:,} | {before['num_database']:,} | " + " | ".join(cells) + " |")
    return lines


def _precision(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def step_table(history: List[Dict[str, Any]]) -> List[str]:
    """Markdown rows: one per step (pseudo-labels, losses, temperature, learning rate)."""
    lines = [
        "| step | lr | mutual pairs | whole-set labels | whole-set precision (%) | batch labels A->B | "
        "batch labels B->A | batch precision (%) | InfoNCE | rec A | rec B | total | temperature |",
        "|" + "---|" * 13,
    ]
    for r in history:
        losses = r["losses"]
        whole_set = r.get("whole_set") or {"count": None, "precision": None}
        count = "-" if whole_set["count"] is None else f"{whole_set['count']:,}"
        lines.append(
            f"| {r['step']} | {r['lr']:.2e} | {r['mutual']}{'' if r['mutual_only'] else ' (all rows)'} | "
            f"{count} | {_precision(whole_set['precision'])} | "
            f"{r['labels_a']} | {r['labels_b']} | {_precision(r['precision'])} | {losses['infonce']:.4f} | "
            f"{losses['reconstruction_a']:.4f} | {losses['reconstruction_b']:.4f} | {losses['total']:.4f} | "
            f"{r['temperature']:.4f} |"
        )
    return lines


def _batch_line(what: str, labels: Dict[str, Any]) -> str:
    precision = "" if labels["precision"] is None else f", precision {100 * labels['precision']:.1f}%"
    return f"- {what}: {labels['mutual']:,} mutual pairs, {labels['count']:,} labels{precision}"


def write_results(output: Path, results: Dict[str, Any]) -> None:
    """``output/results.json`` (``results`` as is) and ``output/results.md``, atomically."""
    output = Path(output)
    atomic_write_json(output / "results.json", results)
    ns = [str(n) for n in results["config"]["recall_at"]]
    views, dims = results["views"], results["dims"]
    lines = [
        f"# Label-free adaptation `{output}`",
        "",
        f"Model `{results['checkpoint']}` ({dims['frozen']}-d, frozen) adapted on `{results['dataset']}` "
        f"[{results['split']}]: {views['a']['images']:,} {views['a']['name']} vs {views['b']['images']:,} "
        f"{views['b']['name']} images, no ground truth; {results['steps']} steps; adapter "
        f"{dims['frozen']} -> {dims['adapted']}; temperature {results['temperature']['initial']:.4f} -> "
        f"{results['temperature']['final']:.4f}; {results['seconds']['total'] / 60:.1f} min.",
        "",
        "## Retrieval before -> after adaptation",
        "",
    ]
    if results["evaluations"]:
        lines += evaluation_table(results["evaluations"], ns)
        lines += ["", "Recall@N and AP in percent; AP as in the University-1652 evaluation (queries with a positive)."]
    else:
        lines.append("No labelled split to evaluate.")
    lines += [line.replace("not evaluated: ", "- not evaluated: ") for line in results.get("skipped", [])]
    batch = results["pseudo_labels"]
    lines += [
        "",
        "## Pseudo-labels",
        "",
        (f"Over the whole training set ({views['a']['images']:,} x {views['b']['images']:,} rows)"
         if batch["frozen"].get("scope") == "whole_set" else
         f"On the batch of step 0 ({batch['batch']['a']:,} x {batch['batch']['b']:,} rows)")
        + f", threshold {results['config']['pseudo_labels']['threshold']}; the E-step searches "
        + ("the whole set" if batch["frozen"].get("scope") == "whole_set" else "each batch") + ":",
        _batch_line("frozen features", batch["frozen"]),
        _batch_line("adapted features", batch["adapted"]),
        "",
        "Per step (precision uses the ground truth, which training never sees):",
        "",
    ]
    lines += step_table(batch["per_step"])
    atomic_write_text(output / "results.md", "\n".join(lines) + "\n")
