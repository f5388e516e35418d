"""``sfrs-report``: a Markdown report (+ figures, + PDF) of training runs and sweeps.

    sfrs-report runs/sare/seed0 runs/sare/seed1 runs/sfrs/seed0 --output report/
    sfrs-report sweeps/lr --output report/ --title "Learning rate" --pdf
    sfrs-report runs/sfrs/seed0 --output report/ --galleries 8

Each path is a training run folder (``sfrs-train --output``: results.json / config.yaml) or
a sweep folder (``sfrs-sweep --output``: summary.json), in any mix; run folders equal but
for their seed are reported together (mean ± std). Writes ``report.md``, ``report.json``,
``figures/*.png``; ``--pdf`` also ``report.pdf`` (matplotlib only); ``--galleries N``
evaluates each entry's best.pt on its test split and adds example and failure galleries
of N queries. See ``sfrs/reports/run_report.py`` for what the report holds.

Exit code 2 when a path is neither a run nor a sweep folder (one line naming it).
"""
from __future__ import annotations

from typing import Optional, Tuple

import click

from sfrs.cli.common import DEBUG_OPTION, TRUST_CHECKPOINT_OPTION, report_errors, resolve_device, version_option

COMMAND = "sfrs-report"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option("--title", help="Heading of the report (default: counts of entries and runs).")
@click.option("--pdf", is_flag=True, help="Also write report.pdf (tables, figures and galleries; matplotlib only).")
@click.option("--galleries", type=click.IntRange(min=0), default=0, show_default=True,
              help="Queries per example/failure gallery of each entry's best.pt on its test split (0 = none; "
                   "extracts the test split once per entry).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per extraction batch (galleries).")
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="DataLoader workers (galleries).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ... (galleries).")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@TRUST_CHECKPOINT_OPTION
@DEBUG_OPTION
@version_option(COMMAND)
@report_errors(COMMAND)
def main(
    paths: Tuple[str, ...], output: str, title: Optional[str], pdf: bool, galleries: int, batch_size: int,
    num_workers: int, device: str, no_progress: bool, trust_checkpoint: bool, debug: bool,
) -> None:
    """Report on the training run folders and sweep folders PATHS."""
    from sfrs.reports import ReportOptions, write_run_report

    options = ReportOptions(
        title=title, pdf=pdf, galleries=galleries, device=str(resolve_device(device)) if galleries else "cpu",
        batch_size=batch_size, num_workers=num_workers, progress=not no_progress,
        trust_checkpoint=trust_checkpoint,
    )
    report = write_run_report(paths, output, options, log=click.echo)
    failed = [name for name, gallery in report["galleries"].items() if "error" in gallery]
    click.echo(f"report of {len(report['entries'])} entries in {output}/report.md"
               + (" (+ report.pdf)" if pdf else "")
               + (f"; galleries not drawn for {', '.join(failed)}" if failed else ""))
