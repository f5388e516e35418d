"""``sfrs-data``: look at a data set without a model (``sfrs-data stats``)."""
from __future__ import annotations

from typing import Optional, Tuple

import click

from sfrs.cli.common import DEBUG_OPTION, report_errors, version_option


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@version_option("sfrs-data")
def main() -> None:
    """Data set tools."""


@main.command()
@click.option("--dataset", "spec", required=True, help="Data set spec, as --dataset of sfrs-eval.")
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--split", "splits", multiple=True, type=click.Choice(["train", "val", "test"]),
              help="Split to describe (repeatable; default: each of train, val, test that exists).")
@click.option("--images-root", type=click.Path(file_okay=False), help="Image folder of a .mat spec.")
@DEBUG_OPTION
@report_errors("sfrs-data")
def stats(spec: str, output: str, splits: Tuple[str, ...], images_root: Optional[str], debug: bool) -> None:
    """Counts, positives per query, nearest database distances, UTM extent and figures of each split."""
    from sfrs.analysis import dataset_stats

    result = dataset_stats(spec, output, splits=splits or None, images_root=images_root)
    for name, split_stats in result.splits.items():
        row = split_stats.to_dict()
        click.echo(
            f"{name}: {row['num_database']:,} database images, {row['num_queries']:,} queries "
            f"({row['queries_without_positive']:,} without a positive within {row['radius_m']:g} m, "
            f"{row['radius_source']})"
        )
    for name, reason in result.skipped.items():
        click.echo(f"{name}: skipped ({reason})")
    click.echo(f"wrote {len(result.files)} files to {output}")


if __name__ == "__main__":
    main()
