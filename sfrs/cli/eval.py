"""``sfrs-eval``: full-database Recall@N of a checkpoint (or a fresh model) on one split,
or, with ``--queries DIR --database DIR`` and no coordinates, the top-k predictions."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import click

from sfrs import distributed
from sfrs.cli.common import (
    DEBUG_OPTION,
    TRUST_CHECKPOINT_OPTION,
    build_test_time,
    protocol_options,
    query_resize_override,
    report_errors,
    resolve_device,
    test_time_options,
    version_option,
)
from sfrs.config import Config, DataConfig, build_config
from sfrs.data import dataset_spec_help
from sfrs.errors import ConfigError, DataError
from sfrs.utils.precision import check_precision
from sfrs.utils.seeding import seed_everything
from sfrs.utils.io import atomic_write_json

#: queries shown in predictions.png when --visualize is not given.
UNLABELLED_GRID_ROWS = 20
#: predictions per query in unlabelled mode when --top-k is not given.
UNLABELLED_TOP_K = 5


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Model or training checkpoint (self-describing).")
@click.option("--dataset", help=f"{dataset_spec_help()} Default: synthetic:small.")
@click.option("--images-root", type=click.Path(file_okay=False), help="Image root for a .mat dataset.")
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option("--threshold", type=float,
              help="Positive radius in metres (default: the data set's conventions, 25 m for every known benchmark).")
@protocol_options
@test_time_options
@click.option("--recall-at", help="Comma-separated N of Recall@N (default: the config's eval.recall_at, 1,5,10,20).")
@click.option("--index", "index_spec", help="faiss index factory string (default Flat = exact).")
@click.option("--pca", "pca_dim", type=int, help="Fit PCA-whitening to DIM on training descriptors and apply it.")
@click.option("--pca-output", type=click.Path(dir_okay=False), help="Where to save the model with its PCA (default next to the checkpoint).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report as JSON.")
@click.option("--save-descriptors", type=click.Path(dir_okay=False),
              help="Write descriptors, UTMs (labelled splits) and paths to HDF5.")
@click.option("--predictions", "predictions_path", type=click.Path(dir_okay=False),
              help="Write the top-k of every query as CSV: query, rank, database_image, distance (squared L2), "
                   "and on a labelled split metres and correct (the ranking Recall@N was computed from; after "
                   "--rerank or maj_voting the order is the method's, the distances stay descriptor distances). "
                   "Unlabelled mode: default OUTPUT/predictions.csv.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (model used when no checkpoint).")
@click.option("--set", "overrides", multiple=True, help="Override a config key: --set model.head=gem (repeatable).")
@click.option("--pretrained", help="Backbone weights without a checkpoint: imagenet, none, or a state-dict path.")
@click.option("--seed", type=int, help="Seed of an untrained model's initialisation (default 0).")
@click.option("--batch-size", type=int, help="Images per extraction batch.")
@click.option("--num-workers", type=int, help="DataLoader workers.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--visualize", type=int, default=0, show_default=True,
              help="N example queries with their top-5 and N failures at R@1 as PNG grids, and a map "
                   "of the queries by R@1 (<json stem or ./sfrs_eval>_examples.png / _failures.png / "
                   "_map.png); unlabelled mode: queries shown in predictions.png (default 20).")
@click.option("--queries", "queries_dir", type=click.Path(file_okay=False),
              help="Unlabelled mode: folder of query images (no coordinates needed); with --database.")
@click.option("--database", "database_dir", type=click.Path(file_okay=False),
              help="Unlabelled mode: folder of database images; with --queries.")
@click.option("--top-k", type=int,
              help=f"Predictions per query: unlabelled mode (default {UNLABELLED_TOP_K}), or --predictions on a "
                   "labelled split (default the largest N of Recall@N).")
@click.option("--sweep", "sweep_text",
              help="Evaluation-only sweep of one setting without retraining, one table and plot in --output "
                   "(default ./sfrs_eval_sweep): threshold=5,10,25,50 (positive radius, metres), "
                   "image_size=96x128,192x256 (or shorter sides), pca_dim=64,128,256 (fitted on the training split).")
@click.option("--output", type=click.Path(file_okay=False),
              help="Folder this command writes to: report.json (unless --json) and the --visualize grids; "
                   "unlabelled mode: predictions.csv / predictions.png (default ./sfrs_predictions).")
@TRUST_CHECKPOINT_OPTION
@DEBUG_OPTION
@version_option("sfrs-eval")
@report_errors("sfrs-eval")
def main(
    checkpoint: Optional[str], dataset: Optional[str], images_root: Optional[str], split: str,
    threshold: Optional[float], nms: Optional[bool], query_resize: Optional[int], no_query_resize: bool,
    test_method: str, image_size: Optional[str], resize: Optional[str], rerank: bool, rerank_top: int,
    rerank_k1: int, rerank_k2: int, rerank_lambda: float, precision: Optional[str], channels_last: bool,
    recall_at: Optional[str], index_spec: Optional[str], pca_dim: Optional[int],
    pca_output: Optional[str], json_path: Optional[str], save_descriptors: Optional[str],
    predictions_path: Optional[str], config_path: Optional[str], overrides: Sequence[str],
    pretrained: Optional[str], seed: int,
    batch_size: Optional[int], num_workers: Optional[int], device: str, no_progress: bool,
    visualize: int, queries_dir: Optional[str], database_dir: Optional[str], top_k: Optional[int],
    sweep_text: Optional[str], output: Optional[str], debug: bool,
    trust_checkpoint: bool,
) -> None:
    """Evaluate Recall@N on a split: extract descriptors, search the database with faiss
    (top-k only), report Recall@N within the positive radius.

    The data set's conventions (radius, spatial NMS, query resize: Tokyo 24/7 gets NMS by
    panorama and queries with a shorter side of 640) apply as in sfrs-eval-all, unless
    --threshold, --nms/--no-nms, --query-resize/--no-query-resize override them; the
    report states the protocol and where each value came from.

    Test time: --test-method (query views: central_crop, five_crops, nearest_crop,
    maj_voting, as in the VG benchmark of Berton et al., CVPR 2022), --image-size H,W or
    --resize shorter_side:N (database and queries; a query resize of the conventions still
    applies to single queries, a crop method replaces it), --rerank (k-reciprocal, of each
    query's top --rerank-top), --precision bf16/fp16 and --channels-last; the report's
    protocol records each of them and the image transforms in words.

    --predictions FILE.csv writes the top-k of every query (query, rank, database_image,
    distance = squared L2 between descriptors, metres from the query, correct = within the
    radius), the very ranking Recall@N was computed from (after NMS when the protocol has it).

    With --queries DIR --database DIR (images without coordinates) it predicts instead:
    the top-k database images of every query, written to OUTPUT/predictions.csv
    (query, rank, database_image, distance; paths relative to the folders)
    and OUTPUT/predictions.png."""

    if visualize < 0:
        raise click.BadParameter("must be 0 or positive", param_hint="--visualize")
    if top_k is not None and top_k < 1:
        raise click.BadParameter("must be a positive integer", param_hint="--top-k")
    unlabelled = queries_dir is not None or database_dir is not None
    if unlabelled:
        _check_unlabelled_options(queries_dir, database_dir, {
            "--dataset": dataset, "--images-root": images_root, "--threshold": threshold, "--pca": pca_dim,
            "--pca-output": pca_output, "--json": json_path,
            "--nms/--no-nms": nms, "--query-resize": query_resize, "--no-query-resize": no_query_resize or None,
            "--test-method": None if test_method == "single" else test_method, "--image-size": image_size,
            "--resize": resize, "--rerank": rerank or None, "--channels-last": channels_last or None,
            "--precision": precision,
        })
    elif top_k is not None and predictions_path is None:
        raise ConfigError("--top-k on a labelled split sets the length of --predictions FILE.csv; give --predictions")
    if checkpoint:
        _check_checkpoint_options(pretrained, seed, overrides)
    config: Config = build_config(
        Config,
        config_path,
        overrides,
        direct={
            "data.dataset": dataset, "data.images_root": images_root,
            "data.eval_positive_radius": threshold, "data.batch_size": batch_size,
            "data.num_workers": num_workers, "eval.index": index_spec, "eval.pca_dim": pca_dim,
            "eval.recall_at": _parse_recall_at(recall_at) if recall_at else None,
            "model.pretrained": pretrained, "seed": seed, "eval.precision": precision,
        },
    )
    check_precision(config.eval.precision, "--precision" if precision is not None else "eval.precision")
    test_time = build_test_time(test_method, image_size, resize, rerank, rerank_top, rerank_k1, rerank_k2,
                                rerank_lambda, config.eval.precision, channels_last)
    if save_descriptors and test_time.views > 1:
        raise ConfigError(f"--save-descriptors writes one descriptor per query; --test-method {test_time.method} "
                          f"has {test_time.views} (use single, central_crop or five_crops)")
    protocol = {
        "threshold": threshold if threshold is not None else _threshold_override(config.data),
        "nms": nms, "query_resize": query_resize_override(query_resize, no_query_resize), "test_time": test_time,
    }
    if unlabelled:
        torch_device = resolve_device(device)
        _predict_unlabelled(config, checkpoint, queries_dir, database_dir, top_k or UNLABELLED_TOP_K, output,
                            visualize, torch_device, not no_progress, trust_checkpoint,
                            predictions_path=predictions_path, save_descriptors=save_descriptors)
        return
    if not distributed.launched_by_torchrun():
        resolve_device(device)  # validates the name and CUDA availability
    ns = _checked_recall_at(config.eval.recall_at)
    if sweep_text is not None:
        _check_sweep_options(sweep_text, {
            "--pca": pca_dim, "--json": json_path, "--predictions": predictions_path,
            "--save-descriptors": save_descriptors, "--visualize": visualize or None,
            "--test-method": None if test_method == "single" else test_method, "--rerank": rerank or None,
            "--image-size": image_size, "--resize": resize,
        })
        torch_device = distributed.setup(device)
        try:
            _evaluate_sweep(config, split, ns, sweep_text, checkpoint, output or "sfrs_eval_sweep", torch_device,
                            not no_progress and distributed.is_main(), trust_checkpoint)
        finally:
            distributed.teardown()
        return
    if output is not None and json_path is None:
        json_path = str(Path(output) / "report.json")
    outputs = {"save_descriptors": save_descriptors, "json_path": json_path, "visualize": visualize,
               "predictions_path": predictions_path, "top_k": top_k or max(ns)}
    torch_device = distributed.setup(device)
    try:
        _evaluate_labelled(config, split, ns, protocol, checkpoint, pca_output, outputs,
                           torch_device, not no_progress and distributed.is_main(), trust_checkpoint)
    finally:
        distributed.teardown()


def _evaluate_labelled(config: Config, split: str, ns, protocol: dict, checkpoint, pca_output, outputs: dict,
                       torch_device, progress: bool, trust_checkpoint: bool = False) -> None:
    """Labelled evaluation; under torchrun every process extracts its shard and only the
    main process searches, prints and writes. ``protocol``: the ``threshold``, ``nms`` and
    ``query_resize`` overrides (None = the data set's conventions) and the ``test_time``
    settings (``sfrs.retrieval.test_time.TestTime``); ``outputs``: the files
    asked for (``save_descriptors``, ``json_path``, ``visualize``, ``predictions_path``, ``top_k``)."""
    from sfrs.data import open_dataset
    from sfrs.retrieval import attach_pca, evaluate, format_report, save_retrieval_examples, write_split_predictions

    save_descriptors, json_path, visualize = outputs["save_descriptors"], outputs["json_path"], outputs["visualize"]
    predictions_path, top_k = outputs["predictions_path"], outputs["top_k"]

    main_process = distributed.is_main()
    if not main_process:  # one voice on the terminal
        sys.stdout = open(os.devnull, "w")
    data = config.data
    started = time.perf_counter()
    eval_split = open_dataset(data.dataset, split, data.images_root)
    click.echo(eval_split.summary())

    model = _load_or_build_model(
        config, checkpoint, torch_device,
        init_source=lambda: _describe_split(_train_split_or(data, eval_split)), trust=trust_checkpoint,
    )
    if config.eval.pca_dim:
        click.echo(attach_pca(
            model, config.eval.pca_dim, lambda: open_dataset(data.dataset, "train", data.images_root),
            save_model_to=pca_output or _default_pca_model_path(config, checkpoint),
            samples=config.eval.pca_samples, seed=config.seed, device=torch_device,
            batch_size=data.batch_size, num_workers=data.num_workers, progress=progress,
        ))

    evaluation = evaluate(
        model, eval_split, device=torch_device, batch_size=data.batch_size,
        num_workers=data.num_workers, ns=ns, **protocol,
        index=config.eval.index, save_descriptors=save_descriptors, progress=progress,
        depth=top_k if predictions_path else None,
    )
    if evaluation is None:  # not the main process
        return
    report = evaluation.report
    report["checkpoint"] = checkpoint
    report["seconds"]["wall"] = time.perf_counter() - started
    click.echo(format_report(report))
    if save_descriptors:
        click.echo(f"descriptors written to {save_descriptors}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(json_path, report)
        click.echo(f"report written to {json_path}")
    if predictions_path:
        rows = write_split_predictions(predictions_path, eval_split, evaluation.distances, evaluation.predictions,
                                       evaluation.positives, top_k)
        click.echo(f"top-{top_k} predictions ({rows:,} rows) written to {predictions_path}")
    if visualize:
        prefix = Path(json_path).with_suffix("") if json_path else Path("sfrs_eval")
        written = save_retrieval_examples(prefix, eval_split, evaluation.predictions, evaluation.positives, visualize,
                                          distances=evaluation.distances)
        click.echo(f"retrieval examples written to {written[0]} and {written[1]}, map to {written[2]}")


def _check_sweep_options(sweep_text: str, given: dict) -> None:
    """--sweep evaluates single views of the model as it is; options that change what one
    evaluation does or writes would be silently dropped, so they are refused."""
    from sfrs.retrieval import parse_sweep

    key, _ = parse_sweep(sweep_text)
    conflicting = [flag for flag, value in given.items() if value is not None
                   and not (key != "image_size" and flag in ("--image-size", "--resize"))]
    if conflicting:
        raise ConfigError(f"--sweep {key} cannot be combined with {', '.join(conflicting)}")


def _evaluate_sweep(config: Config, split: str, ns, sweep_text: str, checkpoint, output: str, torch_device,
                    progress: bool, trust_checkpoint: bool) -> None:
    """One model, one split, several values of one evaluation setting (sfrs.retrieval.eval_sweep)."""
    from sfrs.data import open_dataset
    from sfrs.retrieval import parse_sweep, render_sweep_markdown, run_eval_sweep

    key, values = parse_sweep(sweep_text)
    data = config.data
    eval_split = open_dataset(data.dataset, split, data.images_root)
    click.echo(eval_split.summary())
    model = _load_or_build_model(
        config, checkpoint, torch_device,
        init_source=lambda: _describe_split(_train_split_or(data, eval_split)), trust=trust_checkpoint,
    )
    result = run_eval_sweep(
        model, eval_split, key, values, device=torch_device, batch_size=data.batch_size,
        num_workers=data.num_workers, progress=progress, output_dir=output, ns=ns, index=config.eval.index,
        train_split=lambda: open_dataset(data.dataset, "train", data.images_root),
        pca_samples=config.eval.pca_samples, seed=config.seed,
    )
    if distributed.is_main():
        click.echo(render_sweep_markdown(result))
        click.echo(f"sweep written to {Path(output) / f'sweep_{key}.md'} (.json, .png)")


def _threshold_override(data: DataConfig) -> Optional[float]:
    """The radius a user set (--threshold, --set data.eval_positive_radius, a config file);
    None when it is the schema default, so that the data set's conventions decide."""
    return None if data.eval_positive_radius == DataConfig.eval_positive_radius else data.eval_positive_radius


def _check_checkpoint_options(pretrained: Optional[str], seed: Optional[int], overrides: Sequence[str]) -> None:
    """Options that build an untrained model mean nothing with --checkpoint: refused, not dropped."""
    given = [flag for flag, value in (("--pretrained", pretrained), ("--seed", seed)) if value is not None]
    given += [f"--set {o.split('=', 1)[0]}" for o in overrides if o.strip().startswith("model.")]
    if given:
        raise ConfigError(f"{', '.join(given)}: the model comes from --checkpoint (these set up an untrained model)")


def _check_unlabelled_options(queries_dir: Optional[str], database_dir: Optional[str], labelled: dict) -> None:
    """Unlabelled mode needs both folders and rejects options that need coordinates."""
    if queries_dir is None or database_dir is None:
        missing = "--database" if queries_dir is not None else "--queries"
        raise ConfigError(f"unlabelled mode needs both --queries and --database ({missing} is missing)")
    given = [flag for flag, value in labelled.items() if value is not None]
    if given:
        raise ConfigError(
            f"{', '.join(given)} cannot be used with --queries/--database (images without coordinates)"
        )


def _describe_split(split) -> Tuple[Sequence[str], str]:
    return list(split.database_paths), f"{split.dataset} [{split.split}]"


def _load_or_build_model(config: Config, checkpoint: Optional[str], device, init_source: Callable[[], Tuple[Sequence[str], str]],
                         trust: bool = False):
    """The checkpoint's model (``trust``: also one holding pickled objects), or an untrained
    one of ``config.model`` whose NetVLAD is k-means initialised on the images
    ``init_source()`` returns (paths, description)."""
    from sfrs.models import build_network, load_network
    from sfrs.training.initialise import initialise_network

    if checkpoint:
        model = load_network(checkpoint, device, trust)
        click.echo(f"model: {checkpoint} ({model.config.backbone} + {model.config.head}, {model.out_dim}-d)")
        return model
    seed_everything(config.seed)
    model = build_network(config.model).to(device)
    init_paths, init_name = init_source()
    alpha = initialise_network(
        model, list(init_paths), num_images=config.model.init_images,
        descriptors_per_image=config.model.init_descriptors_per_image, seed=config.seed,
        device=device, batch_size=config.data.batch_size, num_workers=config.data.num_workers,
    )
    how = f", NetVLAD k-means init on {init_name} (alpha {alpha:.1f})" if alpha else ""
    click.echo(
        f"model: untrained {config.model.backbone} + {config.model.head} "
        f"(weights {config.model.pretrained}, seed {config.seed}{how}), {model.out_dim}-d"
    )
    return model


def _image_list(folder: str, what: str) -> List[str]:
    """Every .jpg/.jpeg/.png under ``folder`` (recursively), sorted by relative path."""
    # The VG reader's listing: same extensions, same platform-independent order.
    from sfrs.data.formats.vg_folder import IMAGE_EXTENSIONS, list_images

    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{folder}: {what} folder does not exist")
    paths = list_images(root)
    if not paths:
        raise DataError(f"{folder}: no {'/'.join(IMAGE_EXTENSIONS)} images in the {what} folder")
    return paths


def _predict_unlabelled(
    config: Config, checkpoint: Optional[str], queries_dir: str, database_dir: str, top_k: int,
    output: Optional[str], visualize: int, device, progress: bool, trust_checkpoint: bool = False,
    predictions_path: Optional[str] = None, save_descriptors: Optional[str] = None,
) -> None:
    """Top-k predictions of every query: predictions.csv (or ``predictions_path``) and
    predictions.png in ``output``; descriptors to ``save_descriptors`` when given."""
    from sfrs.retrieval import example_queries, path_grid, retrieve, save_image, write_predictions_csv

    query_paths = _image_list(queries_dir, "query")
    database_paths = _image_list(database_dir, "database")
    click.echo(f"unlabelled retrieval: {len(query_paths):,} queries against {len(database_paths):,} database images")
    model = _load_or_build_model(config, checkpoint, device, init_source=lambda: (database_paths, database_dir),
                                 trust=trust_checkpoint)
    distances, indices = retrieve(
        model, query_paths, database_paths, top_k, index=config.eval.index, device=device,
        batch_size=config.data.batch_size, num_workers=config.data.num_workers, progress=progress,
        save_descriptors=save_descriptors,
    )
    if save_descriptors:
        click.echo(f"descriptors written to {save_descriptors}")
    folder = Path(output or "sfrs_predictions")
    csv_path = Path(predictions_path) if predictions_path else folder / "predictions.csv"
    write_predictions_csv(
        csv_path, [os.path.relpath(p, queries_dir) for p in query_paths],
        [os.path.relpath(p, database_dir) for p in database_paths], distances, indices,
    )
    rows = example_queries(len(query_paths), visualize or UNLABELLED_GRID_ROWS)
    # neutral frames: no ground truth
    grid = path_grid([query_paths[q] for q in rows], database_paths, indices[rows], distances=distances[rows])
    save_image(folder / "predictions.png", grid)
    click.echo(f"top-{indices.shape[1]} predictions written to {csv_path} and {folder / 'predictions.png'}")


def _parse_recall_at(text: str) -> tuple:
    try:
        ns = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got '{text}'", param_hint="--recall-at") from None
    if not ns or ns[0] < 1:
        raise click.BadParameter("values must be positive integers", param_hint="--recall-at")
    return ns


def _checked_recall_at(ns: Sequence[int]) -> tuple:
    if not ns or min(ns) < 1:
        raise ConfigError(f"eval.recall_at must list positive integers, got {list(ns)}")
    return tuple(sorted(set(ns)))


def _train_split_or(data, fallback):
    from sfrs.data import open_dataset

    try:
        return open_dataset(data.dataset, "train", data.images_root)
    except DataError:
        return fallback


def _default_pca_model_path(config: Config, checkpoint: Optional[str]) -> str:
    """``<checkpoint stem>_pca<dim>.pt`` next to the checkpoint (or named after an untrained model)."""
    base = Path(checkpoint) if checkpoint else Path(f"sfrs_{config.model.backbone}_{config.model.head}.pt")
    return str(base.with_name(f"{base.stem}_pca{config.eval.pca_dim}.pt"))


if __name__ == "__main__":
    main()
