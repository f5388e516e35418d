"""``sfrs-report``: one Markdown report (+ PNG figures, + optionally a PDF) of any mix of
training run folders and sweep folders.

Outputs in ``OUTPUT``: ``report.md``, ``report.json`` (everything tabulated, with the
statistics' values), ``figures/*.png`` (:mod:`sfrs.reports.run_figures`), with
``galleries`` > 0 ``galleries/<entry>_{examples,failures,map}.png``, with ``pdf``
``report.pdf`` (:mod:`sfrs.reports.run_pdf`). The report holds:

- the runs and their status (an incomplete run is listed as such and left out of the
  statistics);
- the configuration keys whose values differ between the entries, and the common
  configuration collapsed in a ``<details>`` block;
- final-model and best.pt Recall@N per entry (mean ± sample std over seeds, n), per
  generation, and the transfer table of ``sfrs-eval-all`` reports (in a run's sub-folder)
  or of a sweep's ``transfer`` block;
- the figures, and the galleries (best.pt of the first complete run of each entry on its
  test split, :mod:`sfrs.reports.run_galleries`).

Reading the inputs (:mod:`sfrs.reports.run_sources`) and grouping them
(:mod:`sfrs.reports.run_entries`) happens before anything is written, so a wrong path
fails at once.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from sfrs.errors import SfrsError
from sfrs.reports.run_entries import ReportEntry, build_entries, config_differences
from sfrs.reports.run_figures import FIGURES
from sfrs.reports.run_galleries import run_galleries
from sfrs.reports.run_pdf import write_pdf
from sfrs.reports.run_sources import RunFolder, SweepFolder, read_sources
from sfrs.reports.run_tables import DIFFERENCES_TITLE, Table, common_table, markdown_table, report_tables, value_cell
from sfrs.utils.io import atomic_path, atomic_write_json, atomic_write_text

LOG = logging.getLogger(__name__)
REPORT_FORMAT = "sfrs-report"


@dataclass(frozen=True)
class ReportOptions:
    """How to write the report.

    Attributes:
        title: the report's heading (default: names the inputs).
        pdf: also write report.pdf.
        galleries: queries per gallery (0 = none; > 0 evaluates best.pt on the test split).
        device, batch_size, num_workers, progress, trust_checkpoint: for the galleries'
            evaluation.
    """

    title: Optional[str] = None
    pdf: bool = False
    galleries: int = 0
    device: str = "cpu"
    batch_size: int = 32
    num_workers: int = 0
    progress: bool = True
    trust_checkpoint: bool = False


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_") or "entry"


def _draw_figures(entries: Sequence[ReportEntry], folder: Path, keep: bool) -> Tuple[List[str], List[Any]]:
    """Save each figure that has data as ``folder/<name>.png``; returns their names and,
    with ``keep``, the open figures (for the PDF), else none (closed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: List[str] = []
    kept: List[Any] = []
    for file_name, draw in FIGURES:
        figure = draw(entries)
        if figure is None:
            continue
        with atomic_path(folder / file_name) as tmp:
            figure.savefig(tmp, format="png", dpi=110)
        names.append(file_name)
        if keep:
            kept.append(figure)
        else:
            plt.close(figure)
    return names, kept


def _draw_galleries(entries: Sequence[ReportEntry], output: Path, options: ReportOptions,
                    log: Callable[[str], None]) -> Dict[str, Dict[str, Any]]:
    """entry name -> {"run", "recall", "images"} (paths relative to ``output``), or
    {"error"} when the galleries of that entry cannot be drawn."""
    galleries: Dict[str, Dict[str, Any]] = {}
    for entry in entries:
        run = next((r for r in entry.runs if r.complete), None)
        if run is None:
            galleries[entry.name] = {"error": "no complete run folder"}
            continue
        log(f"galleries: {entry.name}: best.pt of {run.path} on its test split")
        try:
            recall, files = run_galleries(
                run, output / "galleries" / _slug(entry.name), options.galleries, device=options.device,
                batch_size=options.batch_size, num_workers=options.num_workers, progress=options.progress,
                trust_checkpoint=options.trust_checkpoint,
            )
        except SfrsError as exc:
            galleries[entry.name] = {"run": str(run.path), "error": " ".join(str(exc).split())}
            log(f"galleries: {entry.name}: {galleries[entry.name]['error']}")
            continue
        galleries[entry.name] = {"run": str(run.path), "recall": recall,
                                 "images": [str(f.relative_to(output)) for f in files]}
    return galleries


def render_markdown(title: str, inputs: Sequence[str], tables: Sequence[Table], common: Table,
                    figures: Sequence[str], galleries: Dict[str, Dict[str, Any]]) -> str:
    """report.md: the tables (the common configuration folded after the differences),
    then the figures and galleries (paths relative to the report)."""
    lines = [f"# {title}", "", "Inputs: " + ", ".join(f"`{p}`" for p in inputs), ""]
    for table in tables:
        lines += markdown_table(table)
        if table.title == DIFFERENCES_TITLE:
            lines += ["<details><summary>" + common.title + "</summary>", ""]
            lines += markdown_table(common)[2:] + ["</details>", ""]  # the summary line is its title
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    if galleries:
        lines += ["## Galleries (best.pt on the test split)", ""]
        for name, gallery in galleries.items():
            if "error" in gallery:
                lines += [f"- **{name}**: not drawn: {gallery['error']}"]
                continue
            recall = ", ".join(f"R@{n} {v:.1f}" for n, v in gallery["recall"].items())
            lines += ["", f"### {name}", "", f"`{gallery['run']}/best.pt`: {recall}", ""]
            lines += [f"![{Path(f).stem}]({f})" for f in gallery["images"]]
        lines.append("")
    return "\n".join(lines)


def write_run_report(
    paths: Sequence[Union[str, Path]],
    output: Union[str, Path],
    options: ReportOptions = ReportOptions(),
    log: Callable[[str], None] = LOG.info,
) -> Dict[str, Any]:
    """Write the report of the run and sweep folders ``paths`` to ``output``.

    Returns:
        The content of report.json.
    Raises:
        DataError: a path is neither a run folder nor a sweep folder, or cannot be read.
        Errors of the galleries' evaluation are reported in the report, not raised.
    """
    output = Path(output)
    sources = read_sources(paths)
    entries = build_entries(sources)
    differences, common_config = config_differences(entries)
    runs = sum(len(e.runs) for e in entries)
    sweeps = sum(isinstance(s, SweepFolder) for s in sources)
    log(f"{len(entries)} entries from {sum(isinstance(s, RunFolder) for s in sources)} run folders and "
        f"{sweeps} sweeps ({runs} run folders read); {len(differences)} configuration keys differ")
    title = options.title or (f"Training report: {len(entries)} entries from {runs} run folders"
                              + (f" and {sweeps} sweeps" if sweeps else ""))

    names, drawn = _draw_figures(entries, output / "figures", keep=options.pdf)
    figures = [f"figures/{name}" for name in names]
    galleries = _draw_galleries(entries, output, options, log) if options.galleries > 0 else {}
    tables = report_tables(entries, differences)
    common = common_table(common_config)
    inputs = [str(p) for p in paths]
    atomic_write_text(output / "report.md", render_markdown(title, inputs, tables, common, figures, galleries))

    report = {
        "format": REPORT_FORMAT, "version": 1, "title": title, "inputs": inputs,
        "differences": {k: [value_cell(v) for v in column] for k, column in differences.items()},
        "common": common_config,
        "entries": [e.to_json() for e in entries],
        "figures": figures, "galleries": galleries,
    }
    if options.pdf:
        images = [output / f for g in galleries.values() for f in g.get("images", [])]
        write_pdf(output / "report.pdf", title, [f"inputs: {p}" for p in inputs], tables + [common], drawn, images)
        report["pdf"] = "report.pdf"
    atomic_write_json(output / "report.json", report)
    return report
