"""``sfrs-synth``: write the procedural synthetic city in the VG folder format, or with
``--cross-view`` its cross-view counterpart in the University-1652 layout."""
from __future__ import annotations

from typing import Optional

import click

from sfrs.cli.common import DEBUG_OPTION, report_errors, version_option


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--output", type=click.Path(file_okay=False), help="Folder to write (default: the shared cache used by every command).")
@click.option("--size", type=click.Choice(["tiny", "small", "medium"]), default="small", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--occlusion", type=float, default=0.0, show_default=True,
              help="Fraction (0-0.9) of each query's width hidden by a vehicle next to the camera; "
                   "the same city otherwise (--dataset synthetic:SIZE:occlusion=F).")
@click.option("--cross-view", is_flag=True,
              help="Write satellite tiles and drone views of the city's blocks in the University-1652 layout "
                   "(building ids as folders), for sfrs-adapt --dataset u1652:<folder>.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@DEBUG_OPTION
@version_option("sfrs-synth")
@report_errors("sfrs-synth")
def main(output: Optional[str], size: str, seed: int, occlusion: float, cross_view: bool, no_progress: bool,
         debug: bool) -> None:
    """Generate the synthetic city (deterministic in --size, --seed and --occlusion)."""
    if cross_view:
        if occlusion:
            raise click.UsageError("--occlusion applies to the street city, not to --cross-view")
        _cross_view(output, size, seed, not no_progress)
        return
    from sfrs.data.formats.synthetic_city import SyntheticSpec
    from sfrs.data.formats.vg_folder import list_vg_splits, read_vg_split
    from sfrs.data.synthetic import ensure_synthetic, generate_city

    if output:
        root = generate_city(output, size=size, seed=seed, progress=not no_progress, occlusion=occlusion)
    else:
        root = ensure_synthetic(size=size, seed=seed, progress=not no_progress, occlusion=occlusion)
    name = SyntheticSpec(size=size, seed=seed, occlusion=occlusion).name
    click.echo(f"synthetic city '{size}' (seed {seed}, occlusion {occlusion:g}) at {root}  (--dataset {name})")
    for split in list_vg_splits(root):
        click.echo("  " + read_vg_split(root, split, name=name).summary())


def _cross_view(output: Optional[str], size: str, seed: int, progress: bool) -> None:
    from sfrs.data.formats.u1652 import DIRECTIONS, read_u1652
    from sfrs.data.synthetic.cross_view import ensure_cross_view, generate_cross_view

    if output:
        root = generate_cross_view(output, size=size, seed=seed, progress=progress)
    else:
        root = ensure_cross_view(size=size, seed=seed, progress=progress)
    click.echo(f"synthetic cross-view set '{size}' (seed {seed}) at {root}  (--dataset u1652:{root})")
    for split in ("train", "test"):
        for direction in DIRECTIONS if split == "test" else DIRECTIONS[:1]:
            read = read_u1652(root, split, direction)
            click.echo(f"  {split} {direction}: {read.num_queries:,} queries, {read.num_database:,} database images")


if __name__ == "__main__":
    main()
