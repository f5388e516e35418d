"""Reports over many evaluations: one checkpoint on every benchmark under a datasets root
(``sfrs-eval-all``), as JSON, CSV, Markdown and figures; training runs and sweeps
(``sfrs-report``) as Markdown, figures and PDF.

Import report names from here (``from sfrs.reports import EvalAllOptions, run_all``).
"""
from sfrs.reports.plots import plot_published_comparison, plot_recall_curves
from sfrs.reports.published import PUBLISHED_R1, PUBLISHED_SOURCE, published_source
from sfrs.reports.run_entries import ReportEntry, build_entries, config_differences, format_statistic, statistic
from sfrs.reports.run_report import ReportOptions, write_run_report
from sfrs.reports.run_sources import RunFolder, SweepFolder, flatten_config, read_source, read_sources
from sfrs.reports.selection import Selection, select_datasets
from sfrs.reports.summary import EvalAllSummary
from sfrs.reports.tables import REPORT_COLUMNS, render_csv, render_markdown, report_rows
from sfrs.reports.transfer import EvalAllOptions, evaluate_location, run_all, write_outputs

__all__ = [
    "run_all",
    "EvalAllOptions",
    "EvalAllSummary",
    "evaluate_location",
    "select_datasets",
    "Selection",
    "write_outputs",
    "render_csv",
    "render_markdown",
    "report_rows",
    "REPORT_COLUMNS",
    "plot_recall_curves",
    "plot_published_comparison",
    "PUBLISHED_R1",
    "PUBLISHED_SOURCE",
    "published_source",
    # training runs and sweeps (sfrs-report)
    "write_run_report",
    "ReportOptions",
    "read_source",
    "read_sources",
    "RunFolder",
    "SweepFolder",
    "flatten_config",
    "build_entries",
    "ReportEntry",
    "config_differences",
    "statistic",
    "format_statistic",
]
