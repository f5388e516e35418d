"""Evaluate one checkpoint on every benchmark found under a datasets root; one report.

Each data set is opened where :func:`sfrs.data.conventions.find_datasets` finds it and
evaluated with its conventions (:func:`sfrs.data.conventions.conventions_for`: positive
radius, query resizing, spatial NMS) by :func:`sfrs.retrieval.evaluate.evaluate`, with
descriptors streamed to ``OUTPUT/descriptors/<name>_{database,queries}.h5`` so that a rerun
after an interruption reuses the finished extraction.

Outputs in ``OUTPUT`` (rewritten after every data set, so an interrupted run leaves a
partial report): ``report.md``, ``report.csv``, ``report.json``, ``recall_at_n.png``,
``r1_vs_published.png`` (``compare``), ``<name>_examples.png`` / ``<name>_failures.png``
(``visualize``). Requested data sets that are not found are *skipped*; data sets that
cannot be evaluated (unreadable folder, bad file names, bad csv...) are *failed* with
their one-line error, and the others still run.
"""
from __future__ import annotations

import csv
import io
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from sfrs.config import Config, DataConfig, EvalConfig, build_config
from sfrs.data.conventions import KNOWN_DATASETS, DatasetLocation, canonical_name, conventions_for, find_datasets
from sfrs.data.formats import open_dataset
from sfrs.data.geo import Split
from sfrs.data.images import unwrap_worker_error
from sfrs.errors import CheckpointError, ConfigError, DataError, SfrsError
from sfrs.models.network import GeoNet, load_network
from sfrs.retrieval.evaluate import Evaluation, attach_pca, evaluate
from sfrs.retrieval.visual import save_retrieval_examples
from sfrs.utils.io import atomic_path, atomic_write_json, atomic_write_text

LOG = logging.getLogger(__name__)

#: Published Recall@1 (percent) of reference methods, copied from the table "Published
#: numbers people compare against (R@1)" of shared/spec/datasets.md. Sources: NetVLAD
#: (Arandjelovic et al., CVPR 2016), SFRS (Ge et al., ECCV 2020), the ResNet-18
#: re-implementations of the VG benchmark (Berton et al., CVPR 2022), MixVPR (Ali-bey et
#: al., WACV 2023), SALAD (Izquierdo & Civera, CVPR 2024), BoQ (Ali-bey et al., CVPR 2024).
PUBLISHED_R1: Dict[str, Dict[str, float]] = {
    "NetVLAD VGG16 (4096)": {"pitts30k": 84.1},
    "SFRS (4096)": {
        "pitts30k": 89.4, "pitts250k": 90.7, "tokyo247": 85.4, "msls_val": 70.0, "nordland": 16.1,
        "sped": 80.2, "amstertime": 29.7, "st_lucia": 75.9,
    },
    "ResNet-18 + GeM (benchmark re-impl.)": {"pitts30k": 77.8, "msls_val": 35.3},
    "ResNet-18 + NetVLAD (benchmark re-impl.)": {"pitts30k": 86.4, "msls_val": 47.4},
    "MixVPR R50 (4096)": {
        "pitts30k": 91.6, "pitts250k": 94.3, "msls_val": 88.2, "nordland": 58.4, "sped": 85.0, "amstertime": 40.0,
    },
    "SALAD DINOv2 (8448)": {"pitts30k": 92.5, "pitts250k": 95.1, "msls_val": 92.2, "nordland": 76.0, "sped": 92.1},
    "BoQ DINOv2 (12288)": {
        "pitts30k": 93.7, "pitts250k": 96.6, "msls_val": 93.8, "nordland": 81.3, "sped": 92.5,
        "amstertime": 63.0, "st_lucia": 99.9,
    },
}
#: entries marked "~" (approximate) in the source table.
PUBLISHED_APPROXIMATE = {
    ("MixVPR R50 (4096)", "sped"), ("MixVPR R50 (4096)", "amstertime"), ("SALAD DINOv2 (8448)", "pitts30k"),
}
PUBLISHED_SOURCE = "shared/spec/datasets.md (published R@1 of the reference methods)"
#: benchmarks served in several versions (query counts, thresholds): a published number
#: is comparable only with the version named next to it.
VERSION_DEPENDENT = ("nordland", "msls_val")
VERSION_CAVEAT = (
    "Nordland and MSLS come in several versions (query counts, thresholds): their published "
    "numbers are comparable only with the version named next to them."
)

REPORT_COLUMNS = (
    "dataset", "status", "split", "protocol", "num_database", "num_queries", "queries_without_positive",
    "R@1", "R@5", "R@10", "R@20", "descriptor_dim", "extract_seconds", "search_seconds",
    "threshold_m", "nms", "query_resize", "index", "error",
)


@dataclass(frozen=True)
class EvalAllOptions:
    """What to evaluate and how; defaults are those of :class:`DataConfig` / :class:`EvalConfig`.

    Attributes:
        datasets: canonical names or folder aliases to evaluate; None = every known benchmark.
        index: faiss factory string. half: float16 descriptor files.
        pca_dim: PCA-whitening dimension (0 = none), fitted once for all data sets.
        visualize: queries per example grid (0 = none). compare: bar chart against
            :data:`PUBLISHED_R1`.
        msls_protocol: ``official`` (740 queries) or ``all`` for the native MSLS layout.
        threshold: positive radius overriding every data set's convention (None = keep).
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
    ns: Tuple[int, ...] = EvalConfig.recall_at
    batch_size: int = DataConfig.batch_size
    num_workers: int = DataConfig.num_workers
    device: str = "cpu"
    progress: bool = True
    debug: bool = False


@dataclass
class EvalAllSummary:
    """Results of a run: ``results`` (name -> report of ``sfrs-eval --json`` plus
    ``name``, ``checkpoint``, ``notes``), ``skipped`` (requested, not found),
    ``failed`` (name -> one-line error)."""

    checkpoint: str
    datasets_root: str
    options: Dict[str, Any]
    results: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    skipped: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    pca: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "checkpoint": self.checkpoint, "datasets_root": self.datasets_root, "options": self.options,
            "pca": self.pca, "results": self.results, "skipped": self.skipped, "failed": self.failed,
            "published_source": PUBLISHED_SOURCE,
        }


def requested_datasets(names: Optional[Sequence[str]]) -> List[str]:
    """Canonical names of ``names`` (aliases accepted), in the given order; all known when None.

    Raises:
        ConfigError: a name that is no known benchmark (probably a typo).
    """
    if not names:
        return list(KNOWN_DATASETS)
    result: List[str] = []
    for name in names:
        canonical = canonical_name(name)
        if canonical is None:
            raise ConfigError(f"--datasets: unknown data set '{name}' (known: {', '.join(KNOWN_DATASETS)})")
        if canonical not in result:
            result.append(canonical)
    return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # e.g. a torch.device


def _one_line(exc: BaseException) -> str:
    return " ".join(unwrap_worker_error(exc).split())


# -- PCA: fitted once, on the checkpoint's training data -------------------------------------


def _training_candidates(checkpoint: Path, locations: Dict[str, DatasetLocation]) -> List[Tuple[str, Callable[[], Split]]]:
    """Where the checkpoint's training split may be, most specific first: the run's
    ``config.yaml`` (next to ``best.pt``, or one level up from ``checkpoints/``), then the
    train split of a discovered benchmark (SFRS trains on Pitts30k train)."""
    candidates: List[Tuple[str, Callable[[], Split]]] = []
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        config_path = folder / "config.yaml"
        if config_path.is_file():
            def from_config(path: Path = config_path) -> Split:
                data = build_config(Config, path).data
                return open_dataset(data.dataset, "train", data.images_root)

            candidates.append((f"the run configuration {config_path}", from_config))
            break
    for name, location in locations.items():
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
    """Open one benchmark and evaluate it with its conventions; returns (evaluation, notes)."""
    conventions = conventions_for(location.name)
    split = open_dataset(
        location.spec, location.split, location.images_root,
        protocol=options.msls_protocol if location.layout == "msls" else None,
    )
    log(split.summary())
    notes = [conventions.notes] if conventions.notes else []
    nms = conventions.nms
    if nms and split.database_place_ids is None:
        nms = False  # reported, so the number is never mistaken for the NMS protocol
        notes.append("spatial NMS of the protocol NOT applied: the split has no database place ids")
    threshold = options.threshold if options.threshold is not None else conventions.threshold_m
    if threshold != conventions.threshold_m:
        notes.append(f"positive radius {threshold:g} m instead of the protocol's {conventions.threshold_m:g} m")
    evaluation = evaluate(
        model, split, device=options.device, batch_size=options.batch_size, num_workers=options.num_workers,
        ns=options.ns, threshold=threshold, index=options.index, query_resize=conventions.query_resize,
        nms=nms, stream_dir=output / "descriptors", stream_name=location.name, half=options.half,
        progress=options.progress,
    )
    if options.visualize > 0:
        save_retrieval_examples(
            output / location.name, split, evaluation.predictions, evaluation.positives, options.visualize,
        )
    return evaluation, notes


# -- the whole run -----------------------------------------------------------------------------


def run_all(
    checkpoint: Union[str, Path],
    datasets_root: Union[str, Path],
    output: Union[str, Path],
    options: EvalAllOptions = EvalAllOptions(),
    log: Callable[[str], None] = LOG.info,
    on_failure: Callable[[str, str], None] = lambda name, error: None,
) -> EvalAllSummary:
    """Evaluate ``checkpoint`` on every requested benchmark under ``datasets_root``.

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
    wanted = requested_datasets(options.datasets)
    found = find_datasets(datasets_root)
    locations = {name: found[name] for name in wanted if name in found}
    summary = EvalAllSummary(
        checkpoint=str(checkpoint), datasets_root=str(datasets_root),
        options={k: _jsonable(v) for k, v in asdict(options).items()},
        skipped=[name for name in wanted if name not in found],
    )
    if summary.skipped:
        log(f"skipped (not found under {datasets_root}): {', '.join(summary.skipped)}")

    model = _load_model(checkpoint, options.device)
    log(f"model: {checkpoint} ({model.config.backbone} + {model.config.head}, {model.out_dim}-d)")
    if options.pca_dim:
        summary.pca = attach_pca(
            model, options.pca_dim, lambda: _open_training_split(checkpoint, found),
            cache=output / f"pca{options.pca_dim}.pt", samples=options.pca_samples, device=options.device,
            batch_size=options.batch_size, num_workers=options.num_workers, progress=options.progress,
        )
        log(summary.pca)

    for name, location in locations.items():
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


def _load_model(checkpoint: Path, device: str) -> GeoNet:
    """The checkpoint's network; every error names the file (a bad model description
    surfaces as a ConfigError of the model builder, which does not)."""
    try:
        return load_network(checkpoint, device)
    except SfrsError as exc:
        message = _one_line(exc)
        if str(checkpoint) in message:
            raise
        raise CheckpointError(f"{checkpoint}: {message}") from None


def _short_line(report: Dict[str, Any]) -> str:
    recalls = "  ".join(f"R@{n}: {v:5.1f}" for n, v in report["recall"].items())
    return f"{report['name']}: {recalls}"


# -- outputs -------------------------------------------------------------------------------------


def _row(name: str, report: Optional[Dict[str, Any]], error: str = "") -> Dict[str, Any]:
    """One CSV/Markdown row; recall columns empty for data sets without a report."""
    row: Dict[str, Any] = {column: "" for column in REPORT_COLUMNS}
    row["dataset"] = name
    row["status"] = "failed" if error else "ok"
    row["error"] = error
    if report is None:
        return row
    seconds = report["seconds"]
    row.update(
        split=report["split"], protocol=report["protocol"], num_database=report["num_database"],
        num_queries=report["num_queries"], queries_without_positive=report["queries_without_positive"],
        descriptor_dim=report["descriptor_dim"], threshold_m=report["threshold_m"], nms=report["nms"],
        query_resize=report.get("query_resize", "squash"), index=report["index"],
        extract_seconds=round(seconds.get("extract_database", 0.0) + seconds.get("extract_queries", 0.0), 3),
        search_seconds=round(seconds.get("search", 0.0), 3),
    )
    for n, value in report["recall"].items():
        if f"R@{n}" in row:
            row[f"R@{n}"] = round(value, 2)
    return row


def report_rows(summary: EvalAllSummary) -> List[Dict[str, Any]]:
    rows = [_row(name, report) for name, report in summary.results.items()]
    rows += [_row(name, None, error) for name, error in summary.failed.items()]
    return rows


def render_csv(summary: EvalAllSummary) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(REPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(report_rows(summary))
    return buffer.getvalue()


def _cell(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value).replace("|", "\\|")


def render_markdown(summary: EvalAllSummary) -> str:
    """report.md: the results table, notes per data set, skipped and failed sections."""
    options = summary.options
    lines = [
        "# Evaluation on all benchmarks",
        "",
        f"- checkpoint: `{summary.checkpoint}`",
        f"- datasets root: `{summary.datasets_root}`",
        f"- index: `{options.get('index')}`, descriptors stored as {'float16' if options.get('half') else 'float32'}",
    ]
    if summary.pca:
        lines.append(f"- {summary.pca}")
    lines += [
        "",
        "| dataset | protocol | #db | #queries | queries without positives | R@1 | R@5 | R@10 | R@20 "
        "| descriptor dim | extraction (s) | search (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, report in summary.results.items():
        row = _row(name, report)
        cells = [name, row["protocol"], f"{row['num_database']:,}", f"{row['num_queries']:,}",
                 f"{row['queries_without_positive']:,}"]
        cells += [_cell(report["recall"][n]) if n in report["recall"] else "-" for n in ("1", "5", "10", "20")]
        cells += [str(row["descriptor_dim"]), f"{row['extract_seconds']:.1f}", f"{row['search_seconds']:.1f}"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "## Notes", ""]
    for name, report in summary.results.items():
        details = [f"threshold {report['threshold_m']:g} m", f"queries '{report.get('query_resize', 'squash')}'",
                   "spatial NMS" if report["nms"] else "no NMS"]
        lines.append(f"- **{name}**: {', '.join(details)}. " + " ".join(f"{n}." for n in report.get("notes", [])))
        counts = report.get("breakdown_queries", {})
        for group, values in report.get("breakdown", {}).items():
            recalls = ", ".join(f"R@{n} {v:.1f}" for n, v in values.items())
            lines.append(f"  - {group} ({counts.get(group, 0):,} queries): {recalls}")
    if any(name in VERSION_DEPENDENT for name in summary.results):
        lines.append(f"- {VERSION_CAVEAT}")
    lines += ["", "## Skipped (requested, not found)", ""]
    lines += [f"- {name}" for name in summary.skipped] or ["none"]
    lines += ["", "## Failed", ""]
    lines += [f"- **{name}**: {error}" for name, error in summary.failed.items()] or ["none"]
    return "\n".join(lines) + "\n"


def plot_recall_curves(path: Path, summary: EvalAllSummary) -> None:
    """recall_at_n.png: Recall@N against N, one line per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, report in summary.results.items():
        ns = [int(n) for n in report["recall"]]
        ax.plot(ns, list(report["recall"].values()), marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks([1, 5, 10, 20])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("N")
    ax.set_ylabel("Recall@N (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    if summary.results:
        ax.legend(fontsize=8)
    ax.set_title(f"Recall@N - {Path(summary.checkpoint).name}")
    _save_figure(fig, path)


def plot_published_comparison(path: Path, summary: EvalAllSummary) -> None:
    """r1_vs_published.png: our R@1 per data set next to :data:`PUBLISHED_R1`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(summary.results)
    methods = [m for m in PUBLISHED_R1 if any(n in PUBLISHED_R1[m] for n in names)]
    series = [("ours", [summary.results[n]["recall"].get("1", 0.0) for n in names])]
    series += [(m, [PUBLISHED_R1[m].get(n, np.nan) for n in names]) for m in methods]
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.4 * len(names) + 2) + 3.2, 4.6))
    x = np.arange(len(names))
    for i, (label, values) in enumerate(series):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
        if i == 0:
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{n}*" if n in VERSION_DEPENDENT else n for n in names])
    ax.set_ylabel("Recall@1 (%)")
    ax.set_ylim(0, 105)
    # Outside the axes: inside, the legend hides the tallest bars.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("R@1: ours vs published")
    fig.text(0.01, 0.01, f"* {VERSION_CAVEAT}\nPublished numbers: {PUBLISHED_SOURCE}; '~' values plotted as given.",
             fontsize=6, va="bottom", wrap=True)
    fig.subplots_adjust(bottom=0.2, right=0.68)
    _save_figure(fig, path)


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_outputs(output: Path, summary: EvalAllSummary, compare: bool = False) -> None:
    """report.md / .csv / .json and the plots, each written atomically."""
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output / "report.json", summary.to_json())
    atomic_write_text(output / "report.csv", render_csv(summary))
    atomic_write_text(output / "report.md", render_markdown(summary))
    plot_recall_curves(output / "recall_at_n.png", summary)
    if compare:
        plot_published_comparison(output / "r1_vs_published.png", summary)
