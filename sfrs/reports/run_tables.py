"""The tables of a run report, built once and rendered as Markdown (report.md) or drawn
into the PDF (:mod:`sfrs.reports.run_pdf`).

A cell of recall statistics reads ``mean ± std`` (``mean`` alone for one run, ``-`` when
nothing was measured); ``n`` columns give the complete runs behind it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from sfrs.reports.run_entries import MISSING, REPORT_NS, SPLITS, ReportEntry, Stat, format_statistic


DIFFERENCES_TITLE = "Configuration differences"


@dataclass(frozen=True)
class Table:
    """A titled table: ``header`` and ``rows`` of strings; ``note`` printed under the title."""

    title: str
    header: List[str]
    rows: List[List[str]]
    note: str = ""


def stat_cell(stat: Optional[Stat]) -> str:
    """``71.5 ± 2.1``, ``71.5`` (one value) or ``-``."""
    return format_statistic(stat)


def value_cell(value: Any) -> str:
    """A configuration value as the YAML/--set syntax would write it; ``-`` when absent."""
    if value is MISSING:
        return "-"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if value is None:
        return "null"
    return str(value)


def _recall_columns() -> List[str]:
    return [f"{split} R@{n}" for split in SPLITS for n in REPORT_NS]


def _recall_cells(block: Dict[str, Dict[str, Stat]]) -> List[str]:
    return [stat_cell((block.get(split) or {}).get(n)) for split in SPLITS for n in REPORT_NS]


def status_table(entries: Sequence[ReportEntry]) -> Table:
    """Every run folder with its status; sweep configurations without runs on disk by count."""
    rows = []
    for entry in entries:
        for run in entry.runs:
            rows.append([entry.name, str(run.path), run.status])
        if entry.kind == "sweep" and not entry.runs:
            rows.append([entry.name, entry.source, f"{entry.finished} finished (run folders not found)"])
    return Table("Runs", ["entry", "run folder", "status"], rows,
                 "Only complete runs enter the statistics below.")


def differences_table(entries: Sequence[ReportEntry], differences: Dict[str, List[Any]]) -> Table:
    """One row per entry, one column per configuration key whose values differ."""
    keys = list(differences)
    rows = [[entry.name] + [value_cell(differences[k][i]) for k in keys] for i, entry in enumerate(entries)]
    note = "" if keys else "All entries share one configuration."
    return Table(DIFFERENCES_TITLE, ["entry"] + keys, rows, note)


def common_table(common: Dict[str, Any]) -> Table:
    return Table(f"Common configuration ({len(common)} keys)", ["key", "value"],
                 [[k, value_cell(v)] for k, v in sorted(common.items())])


def _seeds(entry: ReportEntry) -> str:
    return ",".join(str(s) for s in entry.seeds) or "-"


def final_table(entries: Sequence[ReportEntry]) -> Table:
    rows = [[e.name, str(e.finished), _seeds(e)] + _recall_cells(e.final) for e in entries]
    return Table("Final model (last generation)", ["entry", "n", "seeds"] + _recall_columns(), rows,
                 "Recall@N (%) of each run's final model, mean ± sample std over the n complete runs.")


def best_table(entries: Sequence[ReportEntry]) -> Table:
    rows = [[e.name, str(e.finished)] + _recall_cells(e.best) for e in entries]
    return Table("best.pt (selected on validation)", ["entry", "n"] + _recall_columns(), rows,
                 "val: the selection's validation recall; test: best.pt measured on the test split at the end "
                 "of training (- for runs that did not record it).")


def generations_table(entries: Sequence[ReportEntry]) -> Table:
    rows = [[e.name, str(g["generation"])] + _recall_cells(g) for e in entries for g in e.generations]
    return Table("Per generation (final model of each generation)", ["entry", "gen"] + _recall_columns(), rows)


def transfer_table(entries: Sequence[ReportEntry]) -> Optional[Table]:
    """Cross-data-set Recall@N (sfrs-eval-all of best.pt), when any entry has it."""
    rows = [[e.name, dataset] + [stat_cell(recall.get(n)) for n in REPORT_NS]
            for e in entries for dataset, recall in e.transfer.items()]
    if not rows:
        return None
    n_values = {len(s.get("values", [])) for e in entries for r in e.transfer.values() for s in r.values()}
    note = "sfrs-eval-all of best.pt" + (", mean ± std over seeds" if max(n_values, default=1) > 1 else "")
    return Table("Transfer to other data sets", ["entry", "dataset"] + [f"R@{n}" for n in REPORT_NS], rows, note)


def report_tables(entries: Sequence[ReportEntry], differences: Dict[str, List[Any]]) -> List[Table]:
    """The tables of the report body, in order (the common configuration is separate)."""
    tables = [status_table(entries), differences_table(entries, differences), final_table(entries),
              best_table(entries), generations_table(entries)]
    transfer = transfer_table(entries)
    return tables + ([transfer] if transfer else [])


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def markdown_table(table: Table, level: str = "##") -> List[str]:
    """``level`` heading, the note, and the Markdown table (or only the note when empty)."""
    lines = [f"{level} {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    if table.rows and table.header:
        lines.append("| " + " | ".join(_escape(h) for h in table.header) + " |")
        lines.append("|" + "---|" * len(table.header))
        lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in table.rows]
        lines.append("")
    return lines
