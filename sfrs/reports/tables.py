"""The cross-dataset report as tables: ``report.csv`` (one row per data set) and
``report.md`` (results table, per-data-set protocol and notes, skipped and failed sections).

Every row states its protocol: ``conventions`` (the benchmark whose conventions applied, or
``default`` for a data set no benchmark goes by) and ``overrides`` (the fields an option set
to something else)."""
from __future__ import annotations

import csv
import io
from typing import Any, Dict, List, Optional

from sfrs.reports.published import VERSION_CAVEAT, VERSION_DEPENDENT
from sfrs.retrieval.protocol import USER_OVERRIDE, describe_protocol
from sfrs.reports.summary import EvalAllSummary

REPORT_COLUMNS = (
    "dataset", "status", "split", "protocol", "num_database", "num_queries", "queries_without_positive",
    "R@1", "R@5", "R@10", "R@20", "descriptor_dim", "extract_seconds", "search_seconds",
    "threshold_m", "nms", "query_resize", "conventions", "overrides", "index", "error",
)


def _row(name: str, report: Optional[Dict[str, Any]], error: str = "") -> Dict[str, Any]:
    """One CSV/Markdown row; recall columns empty for data sets without a report."""
    row: Dict[str, Any] = {column: "" for column in REPORT_COLUMNS}
    row["dataset"] = name
    row["status"] = "failed" if error else "ok"
    row["error"] = error
    if report is None:
        return row
    seconds = report["seconds"]
    row.update(
        split=report["split"], protocol=report["protocol"], num_database=report["num_database"],
        num_queries=report["num_queries"], queries_without_positive=report["queries_without_positive"],
        descriptor_dim=report["descriptor_dim"], threshold_m=report["threshold_m"], nms=report["nms"],
        query_resize="" if report.get("query_resize") is None else report["query_resize"], index=report["index"],
        extract_seconds=round(seconds.get("extract_database", 0.0) + seconds.get("extract_queries", 0.0), 3),
        search_seconds=round(seconds.get("search", 0.0), 3),
    )
    protocol = report.get("evaluation_protocol")
    if protocol is not None:
        row["conventions"] = protocol["conventions"] or "default"
        row["overrides"] = " ".join(k for k, source in protocol["sources"].items() if source == USER_OVERRIDE)
    for n, value in report["recall"].items():
        if f"R@{n}" in row:
            row[f"R@{n}"] = round(value, 2)
    return row


def report_rows(summary: EvalAllSummary) -> List[Dict[str, Any]]:
    """One row per data set (:data:`REPORT_COLUMNS`): evaluated ones first, then failed ones."""
    rows = [_row(name, report) for name, report in summary.results.items()]
    rows += [_row(name, None, error) for name, error in summary.failed.items()]
    return rows


def render_csv(summary: EvalAllSummary) -> str:
    """report.csv: a header of :data:`REPORT_COLUMNS` and :func:`report_rows`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(REPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(report_rows(summary))
    return buffer.getvalue()


def _cell(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value).replace("|", "\\|")


def render_markdown(summary: EvalAllSummary) -> str:
    """report.md: the results table, notes per data set, skipped and failed sections."""
    options = summary.options
    lines = [
        "# Evaluation on all benchmarks",
        "",
        f"- checkpoint: `{summary.checkpoint}`",
        f"- datasets root: `{summary.datasets_root}`",
        f"- index: `{options.get('index')}`, descriptors stored as {'float16' if options.get('half') else 'float32'}",
    ]
    test_time = options.get("test_time")
    if isinstance(test_time, dict):
        size = test_time.get("image_size")
        side = test_time.get("shorter_side")
        rerank = test_time.get("rerank")
        lines.append(
            f"- test time: method `{test_time.get('method')}`, images "
            + (f"{size[0]}x{size[1]}" if size else f"shorter side {side} px" if side else "at the model's input size")
            + (f", k-reciprocal re-ranking of the top {rerank['top']} (k1 {rerank['k1']}, k2 {rerank['k2']}, "
               f"lambda {rerank['lam']:g})" if rerank else "")
            + f", {test_time.get('precision')}" + (" channels-last" if test_time.get("channels_last") else "")
            + " (each data set's protocol below)"
        )
    if summary.pca:
        lines.append(f"- {summary.pca}")
    lines += [
        "",
        "| dataset | protocol | conventions | #db | #queries | queries without positives | R@1 | R@5 | R@10 | R@20 "
        "| descriptor dim | extraction (s) | search (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, report in summary.results.items():
        row = _row(name, report)
        conventions = row["conventions"] + (f" + override of {row['overrides']}" if row["overrides"] else "")
        cells = [name, row["protocol"], conventions, f"{row['num_database']:,}", f"{row['num_queries']:,}",
                 f"{row['queries_without_positive']:,}"]
        cells += [_cell(report["recall"][n]) if n in report["recall"] else "-" for n in ("1", "5", "10", "20")]
        cells += [str(row["descriptor_dim"]), f"{row['extract_seconds']:.1f}", f"{row['search_seconds']:.1f}"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "## Notes", ""]
    for name, report in summary.results.items():
        protocol = report.get("evaluation_protocol")
        details = describe_protocol(protocol) if protocol else f"threshold {report['threshold_m']:g} m"
        lines.append(f"- **{name}**: {details}. " + " ".join(f"{n}." for n in report.get("notes", [])))
        counts = report.get("breakdown_queries", {})
        for group, values in report.get("breakdown", {}).items():
            recalls = ", ".join(f"R@{n} {v:.1f}" for n, v in values.items())
            lines.append(f"  - {group} ({counts.get(group, 0):,} queries): {recalls}")
    if any(name in VERSION_DEPENDENT for name in summary.results):
        lines.append(f"- {VERSION_CAVEAT}")
    lines += ["", "## Skipped (requested, not found)", ""]
    lines += [f"- {name}" for name in summary.skipped] or ["none"]
    lines += ["", "## Failed", ""]
    lines += [f"- **{name}**: {error}" for name, error in summary.failed.items()] or ["none"]
    return "\n".join(lines) + "\n"
