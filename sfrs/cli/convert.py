"""``sfrs-convert``: a model made elsewhere as a self-describing sfrs model file."""
from __future__ import annotations

from typing import Optional

import click

from sfrs.cli.common import DEBUG_OPTION, TRUST_CHECKPOINT_OPTION, report_errors, version_option


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--from", "source_format", type=click.Choice(["openibl"]), required=True,
              help="Who made SOURCE: openibl = the SFRS authors' code (the hub file vgg16_netvlad.pth with "
                   "its PCA-whitening folded in, or a training checkpoint *.pth.tar).")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="The sfrs model file to write.")
@click.option("--pca", "pca_path", type=click.Path(dir_okay=False),
              help="PCA file of a training checkpoint (default: pca_params_<checkpoint name>.h5 next to it, if any).")
@click.option("--pca-dim", type=click.IntRange(min=1),
              help="Principal directions kept from the PCA file (default 4096, as the authors).")
@click.option("--whiten/--no-whiten", default=None,
              help="Divide the kept directions by sqrt(eigenvalue) (default: whiten, as the authors).")
@TRUST_CHECKPOINT_OPTION
@DEBUG_OPTION
@version_option("sfrs-convert")
@report_errors("sfrs-convert")
def main(source: str, source_format: str, output: str, pca_path: Optional[str], pca_dim: Optional[int],
         whiten: Optional[bool], trust_checkpoint: bool, debug: bool) -> None:
    """Convert SOURCE into an sfrs model file that carries its pre-processing, for
    sfrs-eval, sfrs-eval-all and sfrs-train --init-from.

    SOURCE is read without running code (the released hub file is a plain state dict); a
    training checkpoint that holds other pickled objects is refused in one line unless
    --trust-checkpoint is given, which unpickles it in full: give it only for a file from
    the authors' release or your own OpenIBL training. The file written holds tensors and
    plain data only, and opens in every command without that trust.
    """
    from sfrs.models import convert_openibl

    converted = convert_openibl(source, pca_path, pca_dim=pca_dim, whiten=whiten, trust=trust_checkpoint)
    click.echo(converted.description)
    network = converted.network
    network.save(output, extra={"converted_from": converted.source})
    height, width = network.input_size
    mean, std = (", ".join(f"{v:.6g}" for v in values) for values in (network.mean, network.std))
    click.echo(f"written {output}: {network.config.backbone} + {network.config.head}, {network.out_dim:,}-d; "
               f"input {height}x{width} RGB, mean ({mean}), std ({std})")


if __name__ == "__main__":
    main()
