"""``sfrs-train``: SFRS training in generations (also under ``torchrun``)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import click

from sfrs import distributed
from sfrs.cli.common import (
    DEBUG_OPTION,
    TRUST_CHECKPOINT_OPTION,
    report_errors,
    resolve_device,
    training_config_options,
    version_option,
)
from sfrs.config import Config, load_training_config
from sfrs.utils.precision import check_precision


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@training_config_options
@click.option("--output", type=click.Path(file_okay=False), help="Run folder (default runs/<timestamp>).")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--resume", is_flag=True, help="Continue the run in --output (default: the latest run in runs/).")
@click.option("--dry-run", is_flag=True, help="Validate data and config, print the plan, do not train.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@TRUST_CHECKPOINT_OPTION
@DEBUG_OPTION
@version_option("sfrs-train")
@report_errors("sfrs-train")
def main(
    config_path: Optional[str], dataset: Optional[str], images_root: Optional[str], output: Optional[str],
    generations: Optional[int], epochs: Optional[int], seed: Optional[int], init_from: Optional[str], resume: bool,
    overrides: Sequence[str], dry_run: bool, deterministic: bool, device: str, precision: Optional[str],
    no_progress: bool, debug: bool, trust_checkpoint: bool,
) -> None:
    """Train SFRS: generations of hard + soft region losses, each supervised by the
    previous generation's cached soft labels; prints per-generation Recall@N."""
    import torch

    from sfrs.training.generations import prepare_run, train
    from sfrs.training.plan import plan_lines
    from sfrs.training.report import generation_table

    config: Config = load_training_config(
        config_path, overrides, generations=generations, epochs=epochs, dataset=dataset, images_root=images_root,
        seed=seed, init_from=init_from, precision=precision,
    )
    check_precision(config.train.precision, "train.precision" if precision is None else "--precision")
    check_precision(config.eval.precision, "eval.precision")
    if not distributed.launched_by_torchrun():
        resolve_device(device)  # validates the name and CUDA availability
    torch_device = distributed.setup(device)
    is_main = distributed.is_main()
    # every process must use the main process's run folder (timestamps differ)
    run_dir = Path(distributed.broadcast_object(str(_run_dir(output, resume)) if is_main else None))
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    echo = click.echo if is_main else (lambda *args, **kwargs: None)
    progress = not no_progress and is_main
    try:
        if dry_run:
            for line in plan_lines(prepare_run(config, run_dir, create=False, device=torch_device, progress=progress, log=echo)):
                echo(line)
            echo("dry run: nothing trained")
            return
        echo(f"run folder: {run_dir}" + (f" ({distributed.world_size()} processes)" if distributed.world_size() > 1 else ""))
        results = train(config, run_dir, device=torch_device, progress=progress, log=echo,
                        trust_checkpoint=trust_checkpoint)
    finally:
        distributed.teardown()
    if not is_main:
        return
    click.echo("")
    click.echo("\n".join(generation_table(results["generations"], [str(n) for n in config.eval.recall_at[:3]])))
    best = results["best"]
    if best:
        click.echo(f"best on {best['metric']}: generation {best['generation']}, epoch {best['epoch']}")
    click.echo(
        f"wall time {results['seconds'] / 60:.1f} min. Written to {run_dir}: results.md, results.json, train.log, "
        "best.pt, final.pt, checkpoints/, softlabels/, tb/ (tensorboard --logdir "
        f"{run_dir / 'tb'})"
    )


def _run_dir(output: Optional[str], resume: bool) -> Path:
    if output:
        return Path(output)
    if resume:
        runs = sorted(p for p in Path("runs").glob("*") if (p / "checkpoints" / "last.pt").exists())
        if not runs:
            raise click.UsageError("--resume: no run with a checkpoint under runs/; give --output")
        return runs[-1]
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")

