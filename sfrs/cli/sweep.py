"""``sfrs-sweep``: a grid of training runs x seeds, resumable, summarised as mean ± std.

    sfrs-sweep --grid optim.lr=0.001,0.01 --grid optim.optimizer=adam,sgd --seeds 3 \\
        --output runs/lr_sweep --generations 2 --dataset synthetic:small

trains every combination of the grid values for seeds 0, 1, 2 into ordinary run folders
``OUTPUT/runs/<configuration>/seed<k>`` (``<configuration>`` reads
``optim.lr=0.001,optim.optimizer=adam``) and writes ``OUTPUT/summary.json``,
``summary.csv``, ``summary.md`` and figures after every finished run. Values are what
``--set`` accepts, separated by the commas outside brackets, braces and quotes: a list is
written as it is (``--grid 'model.input_size=[96,128],[128,160]'``) and a string holding a
comma is quoted (``--grid 'data.dataset="a,b",c'``). Rerun the same command after an
interruption: finished runs are skipped and a killed one resumes.

Do the soft region labels help? The same schedule with and without them, over seeds
(``docs/soft_label_ablation.md``):

    sfrs-sweep --grid loss.terms.soft.weight=1,0 --seeds 3 --generations 4 \\
        --output runs/ablation --no-progress

The soft term's weight multiplies every generation's ``soft_weight``, so ``0`` is the
hard-loss-only twin (same epochs, initialisation, seed and region negatives). A grid over
``train.generations.*.soft_weight`` is refused before anything runs when it gives
generation 0, which has no teacher, a soft weight; ``train.generations.1.soft_weight=0,0.5``
varies one generation.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

import click

from sfrs.cli.common import (
    DEBUG_OPTION,
    TRUST_CHECKPOINT_OPTION,
    report_errors,
    resolve_device,
    training_config_options,
    version_option,
)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2",
              help="Config key and the values to try (repeatable; the runs are the Cartesian product). Values as "
                   "--set takes them, split at commas outside [], {} and quotes: "
                   "'model.input_size=[96,128],[128,160]', 'data.dataset=\"a,b\",c'.")
@click.option("--seeds", type=click.IntRange(min=1), help="Seeds 0..N-1 of every configuration (default 1).")
@click.option("--seed-list", help="Explicit seeds, e.g. 0,3,7 (instead of --seeds).")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Sweep folder: sweep.json, runs/<configuration>/seed<k>, summary.json/.csv/.md, figures.")
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs at a time, each an sfrs-train subprocess with its share of the cores (1: in this process).")
@click.option("--transfer", "transfer_root", type=click.Path(file_okay=False, exists=True),
              help="Datasets root: evaluate every run's best.pt on each data set found there (as sfrs-eval-all) "
                   "and add per-data-set Recall@N to the summary.")
@training_config_options
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@TRUST_CHECKPOINT_OPTION
@DEBUG_OPTION
@version_option("sfrs-sweep")
@report_errors("sfrs-sweep")
def main(
    grid: Sequence[str], seeds: Optional[int], seed_list: Optional[str], output: str, parallel: int,
    transfer_root: Optional[str], config_path: Optional[str], dataset: Optional[str], images_root: Optional[str],
    generations: Optional[int], epochs: Optional[int], init_from: Optional[str], overrides: Sequence[str],
    precision: Optional[str], deterministic: bool, device: str, no_progress: bool, trust_checkpoint: bool,
    debug: bool,
) -> None:
    """Train a grid of configurations x seeds; summarise Recall@N as mean ± std over seeds."""
    from sfrs.errors import ConfigError
    from sfrs.sweep import SweepSpec, TrainOptions, parse_grid, parse_seed_list, run_sweep

    if seeds is not None and seed_list is not None:
        raise ConfigError("--seeds and --seed-list cannot be used together")
    seed_values = parse_seed_list(seed_list) if seed_list is not None else list(range(seeds or 1))
    spec = SweepSpec(
        axes=tuple(parse_grid(grid)), seeds=tuple(seed_values), transfer=transfer_root,
        options=TrainOptions(config_path=config_path, dataset=dataset, images_root=images_root,
                             generations=generations, epochs=epochs, init_from=init_from, precision=precision,
                             overrides=tuple(overrides), deterministic=deterministic),
    )
    torch_device = resolve_device(device)
    command = spec.command_line(output, parallel=parallel)
    outcome = run_sweep(spec, Path(output), command=command, parallel=parallel, device=str(torch_device),
                        progress=not no_progress, log=click.echo, trust_checkpoint=trust_checkpoint)
    click.echo(f"{len(outcome.trained)} run(s) trained, {len(outcome.skipped)} finished before, "
               f"{len(outcome.failed)} failed. Summary: {Path(output) / 'summary.md'}")
    if outcome.failed:
        for folder, error in outcome.failed.items():
            click.echo(f"sfrs-sweep: error: {folder}: {error}", err=True)
        sys.exit(1)
