"""Evaluate one checkpoint on every data set found under a datasets root; one report.

Each data set is opened where :func:`sfrs.data.find_datasets` finds it (or where
``--datasets`` points, :mod:`sfrs.reports.selection`) and evaluated by
:func:`sfrs.retrieval.evaluate`, as ``sfrs-eval`` does: a known benchmark with its
conventions (:func:`sfrs.data.conventions_for`: positive radius, query resizing, spatial
NMS), any other data set with the default protocol, both unless an option overrides them;
the report says which for every data set. Descriptors are streamed to
``OUTPUT/descriptors/<name>_{database,queries}.h5`` so that a rerun after an interruption
reuses the finished extraction.

Outputs in ``OUTPUT`` (rewritten after every data set, so an interrupted run leaves a
partial report): ``report.md``, ``report.csv``, ``report.json``, ``recall_at_n.png``,
``r1_vs_published.png`` (``compare``), ``<name>_examples.png`` / ``<name>_failures.png``
(``visualize``). Requested benchmarks that are not found are *skipped*; data sets that
cannot be evaluated (no reader opens the folder, bad file names, bad csv...) are *failed* with
their one-line error, and the others still run. The tables are :mod:`sfrs.reports.tables`,
the figures :mod:`sfrs.reports.plots`.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from sfrs.config import Config, DataConfig, EvalConfig, build_config
from sfrs.data import DatasetLocation, Split, open_dataset, unwrap_worker_error
from sfrs.errors import CheckpointError, DataError, SfrsError
from sfrs.models import GeoNet, load_network
from sfrs.reports.plots import plot_published_comparison, plot_recall_curves
from sfrs.reports.selection import select_datasets
from sfrs.reports.summary import EvalAllSummary
from sfrs.reports.tables import render_csv, render_markdown
from sfrs.retrieval import Evaluation, attach_pca, evaluate, save_retrieval_examples
from sfrs.retrieval.protocol import describe_protocol
from sfrs.retrieval.test_time import TestTime
from sfrs.utils.io import atomic_write_json, atomic_write_text

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalAllOptions:
    """What to evaluate and how; defaults are those of :class:`DataConfig` / :class:`EvalConfig`.

    Attributes:
        datasets: benchmark names or aliases, folder names under the root or paths
            (:func:`sfrs.reports.selection.select_datasets`); None = every data set found.
        index: faiss factory string. half: float16 descriptor files.
        pca_dim: PCA-whitening dimension (0 = none), fitted once for all data sets.
        visualize: queries per example grid (0 = none). compare: bar chart against
            :data:`sfrs.reports.published.PUBLISHED_R1`.
        msls_protocol: ``official`` (740 queries) or ``all`` for the native MSLS layout.
        trust_checkpoint: also load a checkpoint holding pickled objects (can run code).
        threshold, nms, query_resize: overrides of every data set's conventions (None = keep;
            ``query_resize`` as in :func:`sfrs.retrieval.protocol.resolve_protocol`).
        test_time: test method, image sizes, re-ranking, precision for every data set
            (:class:`sfrs.retrieval.test_time.TestTime`; each report's protocol records it).
    """

    datasets: Optional[Tuple[str, ...]] = None
    index: str = EvalConfig.index
    half: bool = False
    pca_dim: int = EvalConfig.pca_dim
    pca_samples: int = EvalConfig.pca_samples
    visualize: int = 0
    compare: bool = False
    msls_protocol: str = "official"
    threshold: Optional[float] = None
    nms: Optional[bool] = None
    query_resize: Optional[int] = None
    ns: Tuple[int, ...] = EvalConfig.recall_at
    batch_size: int = DataConfig.batch_size
    num_workers: int = DataConfig.num_workers
    device: str = "cpu"
    progress: bool = True
    debug: bool = False
    trust_checkpoint: bool = False
    test_time: TestTime = TestTime()


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # e.g. a torch.device


def _one_line(exc: BaseException) -> str:
    return " ".join(unwrap_worker_error(exc).split())


# -- PCA: fitted once, on the checkpoint's training data -------------------------------------


def _training_candidates(checkpoint: Path, locations: Dict[str, DatasetLocation]) -> List[Tuple[str, Callable[[], Split]]]:
    """Where the checkpoint's training split may be, most specific first: the run's
    ``config.yaml`` (next to ``best.pt``, or one level up from ``checkpoints/``), then the
    train split of a discovered data set, known benchmarks first (SFRS trains on Pitts30k train)."""
    candidates: List[Tuple[str, Callable[[], Split]]] = []
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        config_path = folder / "config.yaml"
        if config_path.is_file():
            def from_config(path: Path = config_path) -> Split:
                data = build_config(Config, path).data
                return open_dataset(data.dataset, "train", data.images_root)

            candidates.append((f"the run configuration {config_path}", from_config))
            break
    for name, location in sorted(locations.items(), key=lambda item: not item[1].conventions.known):
        candidates.append((
            f"{name} ({location.spec})",
            lambda loc=location: open_dataset(loc.spec, "train", loc.images_root),
        ))
    return candidates


def _open_training_split(checkpoint: Path, locations: Dict[str, DatasetLocation]) -> Split:
    """The first training split that opens, else a DataError listing what was tried."""
    tried = []
    for description, opener in _training_candidates(checkpoint, locations):
        try:
            return opener()
        except (SfrsError, ValueError) as exc:
            tried.append(f"{description}: {_one_line(exc)}")
    raise DataError(
        "no training split found for the checkpoint (tried: " + ("; ".join(tried) or "no run config.yaml "
        "next to the checkpoint and no data set under the root") + ")"
    )


# -- one data set --------------------------------------------------------------------------------


def evaluate_location(
    model: GeoNet,
    location: DatasetLocation,
    output: Path,
    options: EvalAllOptions,
    log: Callable[[str], None],
) -> Tuple[Evaluation, List[str]]:
    """Open one data set and evaluate it with its conventions or the default protocol,
    overridden by ``options``; returns (evaluation, notes on the protocol)."""
    split = open_dataset(
        location.spec, location.split, location.images_root,
        protocol=options.msls_protocol if location.layout == "msls" else None,
    )
    log(split.summary())
    evaluation = evaluate(
        model, split, device=options.device, batch_size=options.batch_size, num_workers=options.num_workers,
        ns=options.ns, conventions=location.name, threshold=options.threshold, nms=options.nms,
        query_resize=options.query_resize, index=options.index, stream_dir=output / "descriptors",
        stream_name=location.name, half=options.half, progress=options.progress, test_time=options.test_time,
    )
    if options.visualize > 0:
        save_retrieval_examples(
            output / location.name, split, evaluation.predictions, evaluation.positives, options.visualize,
            distances=evaluation.distances,
        )
    return evaluation, list(evaluation.protocol.notes)


# -- the whole run -----------------------------------------------------------------------------


def run_all(
    checkpoint: Union[str, Path],
    datasets_root: Union[str, Path],
    output: Union[str, Path],
    options: EvalAllOptions = EvalAllOptions(),
    log: Callable[[str], None] = LOG.info,
    on_failure: Callable[[str, str], None] = lambda name, error: None,
) -> EvalAllSummary:
    """Evaluate ``checkpoint`` on every requested data set under ``datasets_root``.

    Args:
        log: receives progress lines. on_failure: called with (name, one-line error) as
            soon as a data set fails.
    Returns:
        The summary also written to ``output`` (see the module docstring).
    Raises:
        SfrsError: problems that concern every data set (checkpoint, root, --datasets,
            --pca): nothing can be evaluated. With ``options.debug`` per-data-set errors
            are raised too, with their traceback.
    """
    output = Path(output)
    checkpoint = Path(checkpoint)
    selection = select_datasets(options.datasets, datasets_root)
    summary = EvalAllSummary(
        checkpoint=str(checkpoint), datasets_root=str(datasets_root),
        options={k: _jsonable(v) for k, v in asdict(options).items()},
        skipped=selection.skipped, failed=dict(selection.failed),
    )
    if summary.skipped:
        log(f"skipped (not found under {datasets_root}): {', '.join(summary.skipped)}")
    for name, error in selection.failed.items():
        on_failure(name, error)

    model = _load_model(checkpoint, options.device, options.trust_checkpoint)
    log(f"model: {checkpoint} ({model.config.backbone} + {model.config.head}, {model.out_dim}-d)")
    if options.pca_dim:
        summary.pca = attach_pca(
            model, options.pca_dim, lambda: _open_training_split(checkpoint, selection.found),
            cache=output / f"pca{options.pca_dim}.pt", samples=options.pca_samples, device=options.device,
            batch_size=options.batch_size, num_workers=options.num_workers, progress=options.progress,
        )
        log(summary.pca)

    for name, location in selection.locations.items():
        log(f"== {name} ({location.layout}: {location.path}) ==")
        try:
            evaluation, notes = evaluate_location(model, location, output, options, log)
        except (SfrsError, ValueError, OSError, RuntimeError) as exc:
            if options.debug or (isinstance(exc, RuntimeError) and "sfrs.errors." not in str(exc)):
                raise  # a RuntimeError not carrying one of our errors is a bug: show it
            summary.failed[name] = _one_line(exc)
            on_failure(name, summary.failed[name])
        else:
            summary.results[name] = {
                "name": name, **evaluation.report, "checkpoint": str(checkpoint), "notes": notes,
            }
            log(_short_line(summary.results[name]))
        write_outputs(output, summary, compare=options.compare)
    write_outputs(output, summary, compare=options.compare)
    return summary


def _load_model(checkpoint: Path, device: str, trust: bool) -> GeoNet:
    """The checkpoint's network; every error names the file (a bad model description
    surfaces as a ConfigError of the model builder, which does not)."""
    try:
        return load_network(checkpoint, device, trust)
    except SfrsError as exc:
        message = _one_line(exc)
        if str(checkpoint) in message:
            raise
        raise CheckpointError(f"{checkpoint}: {message}") from None


def _short_line(report: Dict[str, Any]) -> str:
    recalls = "  ".join(f"R@{n}: {v:5.1f}" for n, v in report["recall"].items())
    protocol = report.get("evaluation_protocol")
    return f"{report['name']}: {recalls}" + (f"  ({describe_protocol(protocol)})" if protocol else "")


# -- outputs -------------------------------------------------------------------------------------


def write_outputs(output: Path, summary: EvalAllSummary, compare: bool = False) -> None:
    """report.md / .csv / .json and the plots, each written atomically."""
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output / "report.json", summary.to_json())
    atomic_write_text(output / "report.csv", render_csv(summary))
    atomic_write_text(output / "report.md", render_markdown(summary))
    plot_recall_curves(output / "recall_at_n.png", summary)
    if compare:
        plot_published_comparison(output / "r1_vs_published.png", summary)
