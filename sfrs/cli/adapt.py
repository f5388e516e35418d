"""``sfrs-adapt``: adapt a trained model to a new area or a new view pair without labels."""
from __future__ import annotations

from typing import Optional, Sequence

import click

from sfrs.cli.common import DEBUG_OPTION, TRUST_CHECKPOINT_OPTION, report_errors, resolve_device, version_option
from sfrs.data import dataset_spec_help


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="The model to adapt (model file or training checkpoint); it stays frozen.")
@click.option("--dataset", help=f"The unlabelled target. {dataset_spec_help()} "
                                "u1652:<folder> adapts drone <-> satellite.")
@click.option("--split", help="Split whose images train the adapter (default train).")
@click.option("--images-root", type=click.Path(file_okay=False), help="Image root for a .mat dataset.")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Run folder: adapted.pt, results.json/.md, tb/; rerun to resume.")
@click.option("--steps", type=int, help="Adaptation steps (default 200).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML with adaptation settings.")
@click.option("--set", "overrides", multiple=True, help="Override a setting: --set optim.lr=1e-3 (repeatable).")
@click.option("--seed", type=int, help="Seed of the adapter's initialisation and of the batches (default 0).")
@click.option("--batch-size", type=int, help="Images per batch of the frozen feature extraction.")
@click.option("--num-workers", type=int, help="DataLoader workers of the feature extraction.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@TRUST_CHECKPOINT_OPTION
@DEBUG_OPTION
@version_option("sfrs-adapt")
@report_errors("sfrs-adapt")
def main(
    checkpoint: str, dataset: Optional[str], split: Optional[str], images_root: Optional[str], output: str,
    steps: Optional[int], config_path: Optional[str], overrides: Sequence[str], seed: Optional[int],
    batch_size: Optional[int], num_workers: Optional[int], device: str, no_progress: bool, debug: bool,
    trust_checkpoint: bool,
) -> None:
    """Adapt CHECKPOINT to the images of --dataset without any ground truth (EM-CVGL):
    frozen features are extracted once, then a Linear+BN adapter is trained on them with
    mutual-nearest-neighbour pseudo-labels, a symmetric InfoNCE and a reconstruction term.

    Writes OUTPUT/adapted.pt (the frozen model with its adapter: sfrs-eval loads it as
    is), OUTPUT/results.json and results.md (Recall@N and AP of the labelled splits before
    and after; pseudo-label count and precision per step; ground truth is only measured,
    never trained on) and OUTPUT/tb/ (TensorBoard). Rerun the same command to resume."""
    from sfrs.adaptation import adapt, load_adapt_config

    config = load_adapt_config(
        config_path,
        overrides,
        direct={
            "data.dataset": dataset, "data.split": split, "data.images_root": images_root,
            "data.batch_size": batch_size, "data.num_workers": num_workers, "optim.steps": steps, "seed": seed,
        },
    )
    adapt(config, checkpoint, output, device=resolve_device(device), progress=not no_progress, log=click.echo,
          trust_checkpoint=trust_checkpoint)


if __name__ == "__main__":
    main()
