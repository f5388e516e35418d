"""``sfrs-eval``: full-database Recall@N of a checkpoint (or a fresh model) on one split."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional, Sequence

import click

from sfrs.cli.common import DEBUG_OPTION, report_errors, resolve_device, seed_everything
from sfrs.config import Config, build_config
from sfrs.errors import ConfigError, DataError
from sfrs.utils.io import atomic_write_json


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Model or training checkpoint (self-describing).")
@click.option("--dataset", help="synthetic[:tiny|small|medium], a VG folder, or a NetVLAD .mat file. Default: synthetic:small.")
@click.option("--images-root", type=click.Path(file_okay=False), help="Image root for a .mat dataset.")
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option("--threshold", type=float, help="Positive radius in metres (default 25).")
@click.option("--recall-at", default="1,5,10,20", show_default=True, help="Comma-separated N of Recall@N.")
@click.option("--index", "index_spec", help="faiss index factory string (default Flat = exact).")
@click.option("--pca", "pca_dim", type=int, help="Fit PCA-whitening to DIM on training descriptors and apply it.")
@click.option("--pca-output", type=click.Path(dir_okay=False), help="Where to save the model with its PCA (default next to the checkpoint).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report as JSON.")
@click.option("--save-descriptors", type=click.Path(dir_okay=False), help="Write descriptors, UTMs and paths to HDF5.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (model used when no checkpoint).")
@click.option("--set", "overrides", multiple=True, help="Override a config key: --set model.head=gem (repeatable).")
@click.option("--pretrained", help="Backbone weights without a checkpoint: imagenet, none, or a state-dict path.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of an untrained model's initialisation.")
@click.option("--batch-size", type=int, help="Images per extraction batch.")
@click.option("--num-workers", type=int, help="DataLoader workers.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@DEBUG_OPTION
@report_errors("sfrs-eval")
def main(
    checkpoint: Optional[str], dataset: Optional[str], images_root: Optional[str], split: str,
    threshold: Optional[float], recall_at: str, index_spec: Optional[str], pca_dim: Optional[int],
    pca_output: Optional[str], json_path: Optional[str], save_descriptors: Optional[str],
    config_path: Optional[str], overrides: Sequence[str], pretrained: Optional[str], seed: int,
    batch_size: Optional[int], num_workers: Optional[int], device: str, no_progress: bool, debug: bool,
) -> None:
    """Evaluate Recall@N on a split: extract descriptors, search the database with faiss
    (top-k only), report Recall@N within the positive radius."""
    from sfrs.data.formats import open_dataset
    from sfrs.models.network import build_network, load_network
    from sfrs.retrieval.evaluate import evaluate_split, format_report
    from sfrs.training.initialise import initialise_network

    ns = _parse_recall_at(recall_at)
    config: Config = build_config(
        Config,
        config_path,
        overrides,
        direct={
            "data.dataset": dataset, "data.images_root": images_root,
            "data.eval_positive_radius": threshold, "data.batch_size": batch_size,
            "data.num_workers": num_workers, "eval.index": index_spec, "eval.pca_dim": pca_dim,
            "model.pretrained": pretrained, "seed": seed,
        },
    )
    torch_device = resolve_device(device)
    progress = not no_progress
    data = config.data
    started = time.perf_counter()
    eval_split = open_dataset(data.dataset, split, data.images_root)
    click.echo(eval_split.summary())

    if checkpoint:
        model = load_network(checkpoint, torch_device)
        click.echo(f"model: {checkpoint} ({model.config.backbone} + {model.config.head}, {model.out_dim}-d)")
    else:
        seed_everything(config.seed)
        model = build_network(config.model).to(torch_device)
        init_split = _train_split_or(data, eval_split)
        alpha = initialise_network(
            model, list(init_split.database_paths), num_images=config.model.init_images,
            descriptors_per_image=config.model.init_descriptors_per_image, seed=config.seed,
            device=torch_device, batch_size=data.batch_size, num_workers=data.num_workers,
        )
        how = f", NetVLAD k-means init on {init_split.dataset} [{init_split.split}] (alpha {alpha:.1f})" if alpha else ""
        click.echo(
            f"model: untrained {config.model.backbone} + {config.model.head} "
            f"(weights {config.model.pretrained}, seed {config.seed}{how}), {model.out_dim}-d"
        )

    if config.eval.pca_dim:
        _attach_pca(model, config, checkpoint, pca_output, torch_device, progress)

    report = evaluate_split(
        model, eval_split, device=torch_device, batch_size=data.batch_size,
        num_workers=data.num_workers, ns=ns, threshold=data.eval_positive_radius,
        index=config.eval.index, save_descriptors=save_descriptors, progress=progress,
    )
    report["checkpoint"] = checkpoint
    report["seconds"]["wall"] = time.perf_counter() - started
    click.echo(format_report(report))
    if save_descriptors:
        click.echo(f"descriptors written to {save_descriptors}")
    if json_path:
        atomic_write_json(json_path, report)
        click.echo(f"report written to {json_path}")


def _parse_recall_at(text: str) -> tuple:
    try:
        ns = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got '{text}'", param_hint="--recall-at") from None
    if not ns or ns[0] < 1:
        raise click.BadParameter("values must be positive integers", param_hint="--recall-at")
    return ns


def _train_split_or(data, fallback):
    from sfrs.data.formats import open_dataset

    try:
        return open_dataset(data.dataset, "train", data.images_root)
    except DataError:
        return fallback


def _attach_pca(model, config: Config, checkpoint: Optional[str], pca_output: Optional[str], device, progress: bool) -> None:
    from sfrs.data.formats import open_dataset
    from sfrs.retrieval.pca_fit import fit_model_pca

    dim = config.eval.pca_dim
    if model.pca is not None and model.out_dim == dim:
        click.echo(f"PCA-whitening to {dim}-d already stored with the model: reused")
        return
    try:
        train_split = open_dataset(config.data.dataset, "train", config.data.images_root)
    except DataError as exc:
        raise DataError(f"--pca needs the training split of the dataset to fit on: {exc}") from None
    model.set_pca(None)
    pca, used = fit_model_pca(
        model, train_split, dim, samples=config.eval.pca_samples, seed=config.seed, device=device,
        batch_size=config.data.batch_size, num_workers=config.data.num_workers, progress=progress,
    )
    model.set_pca(pca.to(device))
    if pca_output is None:
        base = Path(checkpoint) if checkpoint else Path(f"sfrs_{config.model.backbone}_{config.model.head}.pt")
        pca_output = str(base.with_name(f"{base.stem}_pca{dim}.pt"))
    model.save(pca_output)
    click.echo(f"PCA-whitening {model.head_dim} -> {dim} fitted on {used:,} training descriptors; model saved to {pca_output}")


if __name__ == "__main__":
    main()
