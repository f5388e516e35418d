"""Full-database Recall@N evaluation of a model on one split, as a JSON-ready report.

A split is evaluated with its data set's conventions (see ``sfrs.data.conventions``):
the positive radius (``threshold``, 25 m), how queries are resized (``query_resize``:
``squash`` to the model's input size, or ``shorter_side`` keeping the aspect ratio as
for Tokyo 24/7) and spatial non-maximum suppression over database places (``nms``:
Tokyo 24/7 counts each panorama once). Descriptors stay in memory or are streamed to
resumable HDF5 files (``stream_dir``) for large databases.
"""
from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import h5py
import numpy as np
import torch

from sfrs.data.geo import Split
from sfrs.errors import ConfigError, DataError
from sfrs import distributed
from sfrs.retrieval.extract import extract_descriptors, extract_descriptors_sharded
from sfrs.retrieval.index import search
from sfrs.retrieval.recall import (
    count_queries_without_positive,
    per_query_first_correct_rank,
    recall_from_predictions,
    spatial_nms,
)
from sfrs.retrieval.stream import HDF5Descriptors, descriptor_fingerprint, extract_to_hdf5, search_hdf5
from sfrs.utils.hashing import model_fingerprint as model_weights_hash
from sfrs.utils.io import atomic_path

#: (N, D) descriptors: an in-memory array or rows streamed to HDF5.
Descriptors = Union[np.ndarray, HDF5Descriptors]

#: candidates searched per kept result under spatial NMS (Tokyo 24/7 has 12 views per
#: panorama, so 20x leaves room for every view of max(N) places).
NMS_CANDIDATES_PER_RESULT = 20

#: name of the complementary group in recall breakdowns (``not_<attribute>`` otherwise).
_COMPLEMENT_NAMES = {"night": "day"}


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything one evaluation produced.

    Attributes:
        report: the JSON-ready report (fields of ``sfrs-eval --json``).
        predictions: (Q, max(N)) int64 database indices, best first, after NMS when it
            was requested (-1 = no further distinct place).
        positives: Q int64 arrays of database indices within the positive radius.
    """

    report: Dict[str, Any]
    predictions: np.ndarray
    positives: List[np.ndarray]


def stream_prefix(split: Split) -> str:
    """File-name stem for a split's streamed descriptors, e.g. ``pitts30k_test``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{split.dataset}_{split.split}").strip("_")


def _extract_set(
    model: torch.nn.Module,
    paths: Sequence[str],
    transform: Any,
    kind: str,
    label: str,
    *,
    model_hash: Optional[str],
    stream_file: Optional[Path],
    half: bool,
    device: Union[str, torch.device],
    batch_size: int,
    num_workers: int,
    progress: bool,
) -> Descriptors:
    """(N, D) descriptors of one image list, in memory or in ``stream_file`` (dataset ``kind``)."""
    bar = label if progress else False
    if stream_file is None:
        # under torchrun each process encodes its shard; every process gets all rows
        return extract_descriptors_sharded(
            model, paths, transform, batch_size=batch_size, device=device, num_workers=num_workers, progress=bar,
        )
    if distributed.world_size() > 1:
        raise ConfigError("streaming descriptors to HDF5 runs in a single process; start it without torchrun")
    assert model_hash is not None
    fingerprint = descriptor_fingerprint(model_hash, paths, transform, np.float16 if half else np.float32)
    return extract_to_hdf5(
        model, paths, transform, stream_file, kind, fingerprint=fingerprint,
        batch_size=batch_size, device=device, num_workers=num_workers, half=half, progress=bar,
    )


def extract_split(
    model: torch.nn.Module,
    split: Split,
    *,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    query_resize: str = "squash",
    progress: bool = True,
    stream_dir: Optional[Union[str, Path]] = None,
    stream_name: Optional[str] = None,
    half: bool = False,
) -> Tuple[Descriptors, Descriptors, Dict[str, float]]:
    """Descriptors of the database (N, D) and the queries (Q, D) of ``split``, with timings.

    Args:
        query_resize: ``squash`` or ``shorter_side`` (queries keep their aspect ratio;
            a batch of mixed sizes is run in groups of equal size).
        stream_dir: None keeps float32 arrays in memory. Otherwise rows are streamed to
            ``<stream_dir>/<stream_name>_database.h5`` and ``..._queries.h5``
            (datasets ``database`` / ``queries``) and :class:`HDF5Descriptors` are
            returned; a rerun continues or reuses them (:func:`extract_to_hdf5`).
        stream_name: file-name stem, default :func:`stream_prefix` of the split.
        half: store float16 (streamed files only).
    """
    if half and stream_dir is None:
        raise ValueError("half=True stores float16 files and needs stream_dir")
    was_training = model.training
    model.eval()
    stem = stream_name or stream_prefix(split)
    common = dict(
        model_hash=model_weights_hash(model) if stream_dir is not None else None, half=half,
        device=device, batch_size=batch_size, num_workers=num_workers, progress=progress,
    )
    # Aspect-preserving queries keep the normal batch size: extract_descriptors runs a
    # batch of mixed sizes in groups of equal size, so nothing is padded or squashed.
    sets = (
        ("database", split.database_paths, model.transform()),
        ("queries", split.query_paths, model.transform(resize=query_resize)),
    )
    results: List[Descriptors] = []
    seconds: Dict[str, float] = {}
    try:
        for kind, paths, transform in sets:
            start = time.perf_counter()
            target = Path(stream_dir) / f"{stem}_{kind}.h5" if stream_dir is not None else None
            results.append(_extract_set(
                model, list(paths), transform, kind, f"{split.split} {kind}", stream_file=target, **common,
            ))
            seconds[f"extract_{kind}"] = time.perf_counter() - start
    finally:
        model.train(was_training)
    return results[0], results[1], seconds


def _search_top(queries: Descriptors, database: Descriptors, k: int, index: str) -> np.ndarray:
    """(Q, min(k, N)) database indices; streamed descriptors are read in chunks."""
    if isinstance(queries, np.ndarray) and isinstance(database, np.ndarray):
        return search(queries, database, k=k, index=index)[1]
    return search_hdf5(queries, database, k, index=index)[1]


def ranked_predictions(
    split: Split, database: Descriptors, queries: Descriptors, k: int, *, index: str = "Flat", nms: bool = False
) -> np.ndarray:
    """(Q, k) int64 database indices, best first.

    With ``nms`` the search returns ``k * NMS_CANDIDATES_PER_RESULT`` candidates and only
    the first hit per ``split.database_place_ids`` is kept (-1 pads rows that run out of
    distinct places).

    Raises:
        DataError: ``nms`` on a split without database place ids.
    """
    if not nms:
        return _search_top(queries, database, k, index)
    if split.database_place_ids is None:
        raise DataError(
            f"{split.dataset} [{split.split}]: spatial NMS needs database place ids "
            "(pano ids in VG file names, folders in Tokyo 24/7), and this split has none"
        )
    candidates = _search_top(queries, database, k * NMS_CANDIDATES_PER_RESULT, index)
    return spatial_nms(candidates, split.database_place_ids, keep=k)


def recall_breakdown(
    predictions: np.ndarray,
    positives: Sequence[np.ndarray],
    attributes: Dict[str, np.ndarray],
    ns: Sequence[int],
) -> Tuple[Dict[str, Dict[str, float]], Dict[str, int]]:
    """Recall@N of the query groups defined by boolean per-query attributes.

    Args:
        predictions: (Q, k) ranked database indices. positives: Q index arrays.
        attributes: name -> (Q,) array; boolean ones define a group (``night``) and its
            complement (``day``, else ``not_<name>``); other dtypes (timestamps) are skipped.
    Returns:
        ({group: {"N": percent}}, {group: number of queries}); empty groups are left out.
    """
    ranks = per_query_first_correct_rank(predictions, positives)
    breakdown: Dict[str, Dict[str, float]] = {}
    counts: Dict[str, int] = {}
    for name, values in sorted(attributes.items()):
        values = np.asarray(values)
        if values.dtype != np.bool_:
            continue
        if values.shape != (len(ranks),):
            raise DataError(f"query attribute '{name}' has shape {values.shape}, expected ({len(ranks)},)")
        for group, mask in ((name, values), (_COMPLEMENT_NAMES.get(name, f"not_{name}"), ~values)):
            count = int(mask.sum())
            if count == 0:
                continue
            hits = ranks[mask]
            breakdown[group] = {str(n): 100.0 * float(np.count_nonzero((hits >= 0) & (hits < n))) / count for n in ns}
            counts[group] = count
    return breakdown, counts


def recall_report(
    split: Split,
    database: Descriptors,
    queries: Descriptors,
    *,
    ns: Sequence[int] = (1, 5, 10, 20),
    threshold: float = 25.0,
    index: str = "Flat",
    nms: bool = False,
) -> Tuple[Dict[str, Any], np.ndarray]:
    """Search the database (top-max(N) only) and compute Recall@N; returns (report, predictions).

    ``database`` (N, D) and ``queries`` (Q, D) are arrays or :class:`HDF5Descriptors`.
    ``predictions`` is (Q, max(N)) int64 (after NMS when ``nms``). The report holds
    ``breakdown`` / ``breakdown_queries`` only when the split has boolean query attributes.
    """
    ns = [int(n) for n in ns]
    start = time.perf_counter()
    predictions = ranked_predictions(split, database, queries, max(ns), index=index, nms=nms)
    search_seconds = time.perf_counter() - start
    positives = split.positives(threshold)
    recalls = recall_from_predictions(predictions, positives, ns)
    report: Dict[str, Any] = {
        "dataset": split.dataset,
        "split": split.split,
        "protocol": split.protocol,
        "num_database": split.num_database,
        "num_queries": split.num_queries,
        "queries_without_positive": int(count_queries_without_positive(positives)),
        "threshold_m": float(threshold),
        "nms": bool(nms),
        "recall": {str(n): float(recalls[n]) for n in ns},
        "descriptor_dim": int(database.shape[1]),
        "index": index,
        "seconds": {"search": search_seconds},
    }
    breakdown, counts = recall_breakdown(predictions, positives, split.query_attributes, ns)
    if breakdown:
        report["breakdown"] = breakdown
        report["breakdown_queries"] = counts
    return report, predictions


def evaluate(
    model: torch.nn.Module,
    split: Split,
    *,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    ns: Sequence[int] = (1, 5, 10, 20),
    threshold: float = 25.0,
    index: str = "Flat",
    query_resize: str = "squash",
    nms: bool = False,
    stream_dir: Optional[Union[str, Path]] = None,
    stream_name: Optional[str] = None,
    half: bool = False,
    save_descriptors: Optional[Union[str, Path]] = None,
    progress: bool = True,
) -> Evaluation:
    """Extract, search and score one split; the report plus the ranked predictions.

    See :func:`extract_split` for ``query_resize``, ``stream_dir``, ``stream_name``,
    ``half`` and :func:`ranked_predictions` for ``nms``. Under torchrun the extraction is
    sharded over the processes and the search runs once: processes other than the main
    one return ``None`` (and write nothing).
    """
    total_start = time.perf_counter()
    database, queries, seconds = extract_split(
        model, split, device=device, batch_size=batch_size, num_workers=num_workers,
        query_resize=query_resize, progress=progress, stream_dir=stream_dir, stream_name=stream_name, half=half,
    )
    if not distributed.is_main():
        return None
    report, predictions = recall_report(split, database, queries, ns=ns, threshold=threshold, index=index, nms=nms)
    report["query_resize"] = query_resize
    report["seconds"] = {**seconds, **report["seconds"], "total": time.perf_counter() - total_start}
    if save_descriptors is not None:
        write_descriptors(save_descriptors, split, np.asarray(database), np.asarray(queries))
    return Evaluation(report=report, predictions=predictions, positives=split.positives(threshold))


def evaluate_split(model: torch.nn.Module, split: Split, **options: Any) -> Dict[str, Any]:
    """The report of :func:`evaluate` (the fields ``sfrs-eval --json`` writes).

    Keyword arguments as for :func:`evaluate`: ``device``, ``batch_size``,
    ``num_workers``, ``ns``, ``threshold``, ``index``, ``query_resize``, ``nms``,
    ``stream_dir``, ``stream_name``, ``half``, ``save_descriptors``, ``progress``.
    """
    return evaluate(model, split, **options).report


def retrieve(
    model: torch.nn.Module,
    query_paths: Sequence[str],
    database_paths: Sequence[str],
    k: int,
    *,
    index: str = "Flat",
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """Top-``k`` database images of each query image, without any ground truth.

    Returns:
        distances (Q, min(k, N)) float32 squared L2, ascending; indices (Q, min(k, N)) int64.
    """
    database = extract_descriptors(
        model, database_paths, model.transform(), batch_size=batch_size, device=device,
        num_workers=num_workers, progress="database" if progress else False,
    )
    queries = extract_descriptors(
        model, query_paths, model.transform(), batch_size=batch_size, device=device,
        num_workers=num_workers, progress="queries" if progress else False,
    )
    return search(queries, database, k=k, index=index)


def write_predictions_csv(
    path: Union[str, Path],
    query_names: Sequence[str],
    database_names: Sequence[str],
    distances: np.ndarray,
    indices: np.ndarray,
) -> None:
    """``query,rank,database_image,distance`` rows (rank 1 = best, distance = squared L2).

    ``distances`` / ``indices`` are (Q, k) as returned by :func:`retrieve`; -1 entries
    (approximate indexes that found fewer than k) are left out.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["query", "rank", "database_image", "distance"])
    for query, row_dist, row_idx in zip(query_names, distances, indices):
        for rank, (dist, idx) in enumerate(zip(row_dist, row_idx), start=1):
            if idx >= 0:
                writer.writerow([query, rank, database_names[int(idx)], f"{float(dist):.6f}"])
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def attach_pca(
    model: Any,
    dim: int,
    open_train_split: Callable[[], Split],
    *,
    cache: Optional[Union[str, Path]] = None,
    samples: int = 10000,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> str:
    """Give ``model`` (a GeoNet) PCA-whitening to ``dim``: reuse, load or fit it.

    Order: the PCA the model carries when it has ``dim`` outputs; else ``cache`` when it
    was fitted on these very network weights; else a fit on up to ``samples`` descriptors
    of the split ``open_train_split()`` returns (called only then: opening a training
    split can be slow, and its absence is an error only then), written to ``cache``.

    Returns:
        One human line saying which of the three happened.
    Raises:
        DataError: the training split cannot be opened. ConfigError: impossible ``dim``.
    """
    from sfrs.retrieval.pca import PCAWhitening
    from sfrs.retrieval.pca_fit import fit_model_pca
    from sfrs.utils.io import atomic_torch_save

    if dim < 1:
        raise ConfigError(f"--pca {dim}: the dimension must be positive")
    if model.pca is not None and model.out_dim == dim:
        return f"PCA-whitening to {dim}-d already stored with the model: reused"
    model.set_pca(None)  # a PCA of another dimension: whiten the head's output afresh
    base = model_weights_hash(model)
    cached = _read_pca_cache(cache, base, dim)
    if cached is not None:
        model.set_pca(PCAWhitening(cached["mean"], cached["projection"]).to(device))
        return f"PCA-whitening {model.head_dim} -> {dim} loaded from {cache} (fitted on these weights)"
    try:
        train_split = open_train_split()
    except DataError as exc:
        raise DataError(f"--pca needs the training split of the dataset to fit on: {exc}") from None
    pca, used = fit_model_pca(
        model, train_split, dim, samples=samples, seed=seed, device=device,
        batch_size=batch_size, num_workers=num_workers, progress=progress,
    )
    model.set_pca(pca.to(device))
    if cache is not None and distributed.is_main():
        atomic_torch_save({"weights": base, "dim": dim, "pca": {k: v.cpu() for k, v in pca.state_dict().items()}}, cache)
    return (
        f"PCA-whitening {model.head_dim} -> {dim} fitted on {used:,} descriptors of "
        f"{train_split.dataset} [{train_split.split}]"
    )


def _read_pca_cache(cache: Optional[Union[str, Path]], weights: str, dim: int) -> Optional[Dict[str, torch.Tensor]]:
    """The cached PCA state when ``cache`` was fitted on ``weights`` to ``dim``; None otherwise."""
    if cache is None or not Path(cache).is_file():
        return None
    try:
        payload = torch.load(cache, map_location="cpu", weights_only=False)
    except Exception:  # an unreadable cache is refitted, never trusted
        return None
    if not isinstance(payload, dict) or payload.get("weights") != weights or payload.get("dim") != dim:
        return None
    return payload.get("pca")


def write_descriptors(path: Union[str, Path], split: Split, database: np.ndarray, queries: np.ndarray) -> None:
    """HDF5 with ``database``, ``queries`` (float32 rows in file order), UTMs and image paths."""
    strings = h5py.string_dtype(encoding="utf-8")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("database", data=database.astype(np.float32, copy=False))
            handle.create_dataset("queries", data=queries.astype(np.float32, copy=False))
            handle.create_dataset("database_utm", data=np.asarray(split.database_utm, dtype=np.float64))
            handle.create_dataset("query_utm", data=np.asarray(split.query_utm, dtype=np.float64))
            handle.create_dataset("database_paths", data=list(split.database_paths), dtype=strings)
            handle.create_dataset("query_paths", data=list(split.query_paths), dtype=strings)
            handle.attrs["dataset"] = split.dataset
            handle.attrs["split"] = split.split


def format_report(report: Dict[str, Any]) -> str:
    """A few human lines for the terminal."""
    recalls = "  ".join(f"R@{n}: {value:5.1f}" for n, value in report["recall"].items())
    seconds = report["seconds"]
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
    conventions = []
    if report.get("nms"):
        conventions.append("spatial NMS")
    if report.get("query_resize", "squash") != "squash":
        conventions.append(f"queries resized '{report['query_resize']}'")
    lines = [
        f"{report['dataset']} [{report['split']}] {report['num_database']:,} database / "
        f"{report['num_queries']:,} queries ({report['queries_without_positive']:,} without a positive "
        f"within {report['threshold_m']:g} m), {report['descriptor_dim']}-d, index {report['index']}"
        + (f", {', '.join(conventions)}" if conventions else ""),
        f"  {recalls}",
    ]
    counts = report.get("breakdown_queries", {})
    for group, values in report.get("breakdown", {}).items():
        group_recalls = "  ".join(f"R@{n}: {value:5.1f}" for n, value in values.items())
        lines.append(f"  {group} ({counts.get(group, 0):,} queries): {group_recalls}")
    lines.append(f"  time: {timing}")
    return "\n".join(lines)
