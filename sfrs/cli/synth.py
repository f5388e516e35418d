"""``sfrs-synth``: write the procedural synthetic city in the VG folder format."""
from __future__ import annotations

from typing import Optional

import click

from sfrs.cli.common import DEBUG_OPTION, report_errors


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--output", type=click.Path(file_okay=False), help="Folder to write (default: the shared cache used by every command).")
@click.option("--size", type=click.Choice(["tiny", "small", "medium"]), default="small", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@DEBUG_OPTION
@report_errors("sfrs-synth")
def main(output: Optional[str], size: str, seed: int, no_progress: bool, debug: bool) -> None:
    """Generate the synthetic city (deterministic in --size and --seed)."""
    from sfrs.data.formats.vg_folder import list_vg_splits, read_vg_split
    from sfrs.data.synthetic import ensure_synthetic, generate_city

    if output:
        root = generate_city(output, size=size, seed=seed, progress=not no_progress)
    else:
        root = ensure_synthetic(size=size, seed=seed, progress=not no_progress)
    click.echo(f"synthetic city '{size}' (seed {seed}) at {root}")
    for split in list_vg_splits(root):
        click.echo("  " + read_vg_split(root, split, name=f"synthetic:{size}").summary())


if __name__ == "__main__":
    main()
