"""A sweep's summary: per configuration, mean and sample std (ddof=1) over its finished
seeds of validation and test Recall@1/5/10 for the final generation, for ``best.pt`` and
for every generation, and of the transfer data sets; as ``summary.json`` (read by
``sfrs-report``, format ``sfrs-sweep-summary``), ``summary.csv`` and ``summary.md``.

A statistic is ``{"mean", "std", "values"}``; ``std`` is None (``n/a`` in the tables)
for one seed, and ``mean`` None when no seed has finished.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from sfrs.reports import format_statistic, statistic
from sfrs.sweep.grid import format_value
from sfrs.sweep.spec import PlannedRun

SUMMARY_FORMAT = "sfrs-sweep-summary"
NS = ("1", "5", "10")
SPLITS = ("val", "test")
RESULTS_FILE = "results.json"

Stat = Dict[str, Any]


def finished(folder: Path) -> Optional[Dict[str, Any]]:
    """The results of the complete run (training or adaptation) in ``folder``, else None."""
    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # being written or broken: not finished
    return results if isinstance(results, dict) and results.get("complete") else None


def recall_block(recalls: Sequence[Optional[Dict[str, float]]], ns: Sequence[str] = NS) -> Dict[str, Stat]:
    """{N: statistic of the runs' Recall@N} for each N of ``ns`` (missing recalls skipped)."""
    present = [r for r in recalls if r]
    return {n: statistic([r[n] for r in present if n in r]) for n in ns}


def summarise_results(results: Sequence[Dict[str, Any]],
                      transfer: Optional[Sequence[Dict[str, Dict[str, float]]]] = None) -> Dict[str, Any]:
    """The statistics of one configuration from its finished runs' ``results.json``;
    ``transfer``: per run, {data set: {N: recall}} (the block is left out when None)."""
    last = [r["generations"][-1] if r.get("generations") else {} for r in results]
    best = [r.get("best") or {} for r in results]
    count = max((len(r.get("generations", [])) for r in results), default=0)
    block: Dict[str, Any] = {
        "final": {s: recall_block([g.get(s) for g in last]) for s in SPLITS},
        "best": {s: recall_block([b.get(s) for b in best]) for s in SPLITS},
        "generations": [
            {"generation": g, **{s: recall_block([r["generations"][g].get(s) for r in results
                                                  if len(r["generations"]) > g]) for s in SPLITS}}
            for g in range(count)
        ],
    }
    if transfer is not None:
        names = sorted({name for per_run in transfer for name in per_run})
        block["transfer"] = {name: recall_block([per_run.get(name) for per_run in transfer]) for name in names}
    return block


def build_summary(output: Path, runs: Sequence[PlannedRun], *, varied: Sequence[str], seeds: Sequence[int],
                  command: str, transfer: Optional[Dict[str, Dict[str, Dict[str, Dict[str, float]]]]] = None,
                  failed: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """summary.json's content from the run folders under ``output``.

    Args:
        transfer: None without ``--transfer``; else {run folder: {data set: {N: recall}}}
            for the runs evaluated so far.
        failed: {run folder: one-line error} of runs that failed in this invocation.
    """
    failed = failed or {}
    by_configuration: Dict[str, List[PlannedRun]] = {}
    for run in runs:
        by_configuration.setdefault(run.configuration.name, []).append(run)
    entries = []
    for name, members in by_configuration.items():
        done = [(run, finished(output / run.folder)) for run in members]
        done = [(run, results) for run, results in done if results is not None]
        per_run_transfer = None
        if transfer is not None:
            per_run_transfer = [transfer[run.folder] for run, _ in done if run.folder in transfer]
        entries.append({
            "name": name,
            "values": dict(members[0].configuration.values),
            "runs": [run.folder for run in members],
            "finished": len(done),
            "finished_seeds": [run.seed for run, _ in done],
            "failed": {run.folder: failed[run.folder] for run in members if run.folder in failed},
            **summarise_results([results for _, results in done], per_run_transfer),
        })
    return {"format": SUMMARY_FORMAT, "version": 1, "varied": list(varied), "seeds": list(seeds),
            "command": command, "configurations": entries}


def format_stat(stat: Stat, digits: int = 1) -> str:
    """``"32.5 ± 1.2"``, ``"32.5 ± n/a"`` (one seed) or ``"-"`` (none)."""
    return format_statistic(stat, digits, one_value="n/a")


def _columns(summary: Dict[str, Any]) -> List[tuple]:
    """(column name, path into a configuration) of every statistic the CSV has."""
    columns = []
    for part in ("final", "best"):
        columns += [(f"{part}_{s}_R@{n}", (part, s, n)) for s in SPLITS for n in NS]
    generations = max((len(c["generations"]) for c in summary["configurations"]), default=0)
    columns += [(f"gen{g}_{s}_R@{n}", ("generations", g, s, n)) for g in range(generations) for s in SPLITS for n in NS]
    datasets = sorted({d for c in summary["configurations"] for d in c.get("transfer", {})})
    columns += [(f"transfer_{d}_R@{n}", ("transfer", d, n)) for d in datasets for n in NS]
    return columns


def _lookup(configuration: Dict[str, Any], path: tuple) -> Stat:
    node: Any = configuration
    for key in path:
        if isinstance(node, list):
            node = node[key] if key < len(node) else {}
        else:
            node = node.get(key, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def render_csv(summary: Dict[str, Any]) -> str:
    """One row per configuration: its name, the varied values, ``seeds`` (finished runs),
    then ``<column>_mean`` / ``<column>_std`` of every statistic (std ``n/a`` for one seed,
    both empty when no seed finished)."""
    columns = _columns(summary)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["configuration", *summary["varied"], "seeds"]
                    + [f"{name}_{what}" for name, _ in columns for what in ("mean", "std")])
    for configuration in summary["configurations"]:
        row = [configuration["name"], *(format_value(configuration["values"].get(k)) for k in summary["varied"]),
               configuration["finished"]]
        for _, path in columns:
            stat = _lookup(configuration, path)
            if stat.get("mean") is None:
                row += ["", ""]
            else:
                row += [f"{stat['mean']:.4f}", "n/a" if stat.get("std") is None else f"{stat['std']:.4f}"]
        writer.writerow(row)
    return buffer.getvalue()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(summary: Dict[str, Any], figures: Sequence[str] = ()) -> str:
    """Tables of the final generation, best.pt, every generation and the transfer data sets
    (mean ± sample std over the finished seeds), then the figures."""
    configurations = summary["configurations"]
    lines = ["# Sweep summary", "", f"Command: `{summary['command']}`", "",
             f"Varied: {', '.join(summary['varied']) or 'nothing (seeds only)'}; seeds "
             f"{', '.join(str(s) for s in summary['seeds'])}. Cells: mean ± sample std (ddof=1) over the "
             "finished seeds, Recall@N in %; n/a: one seed.", ""]
    for title, part in (("Final generation", "final"), ("best.pt (chosen on validation)", "best")):
        lines += [f"## {title}", "",
                  "| configuration | seeds | " + " | ".join(f"{s} R@{n}" for s in SPLITS for n in NS) + " |",
                  "|---|---:|" + "---|" * (len(SPLITS) * len(NS))]
        for c in configurations:
            cells = [format_stat(c[part][s][n]) for s in SPLITS for n in NS]
            lines.append(f"| {_cell(c['name'])} | {c['finished']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Per generation", "",
              "| configuration | generation | " + " | ".join(f"{s} R@{n}" for s in SPLITS for n in NS) + " |",
              "|---|---:|" + "---|" * (len(SPLITS) * len(NS))]
    for c in configurations:
        for g in c["generations"]:
            cells = [format_stat(g[s][n]) for s in SPLITS for n in NS]
            lines.append(f"| {_cell(c['name'])} | {g['generation']} | " + " | ".join(cells) + " |")
    lines.append("")
    if any("transfer" in c for c in configurations):
        lines += ["## Transfer (best.pt on other data sets)", "",
                  "| configuration | data set | " + " | ".join(f"R@{n}" for n in NS) + " |",
                  "|---|---|" + "---|" * len(NS)]
        for c in configurations:
            for dataset, block in c.get("transfer", {}).items():
                lines.append(f"| {_cell(c['name'])} | {dataset} | " + " | ".join(format_stat(block[n]) for n in NS) + " |")
        lines.append("")
    failed = {folder: error for c in configurations for folder, error in c.get("failed", {}).items()}
    if failed:
        lines += ["## Failed runs", ""] + [f"- `{folder}`: {error}" for folder, error in failed.items()] + [""]
    for figure in figures:
        lines += [f"![{Path(figure).stem}]({figure})", ""]
    return "\n".join(lines)
