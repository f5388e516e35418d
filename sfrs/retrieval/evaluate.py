"""Full-database Recall@N evaluation of a model on one split, as a JSON-ready report."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import h5py
import numpy as np
import torch

from sfrs.data.geo import Split
from sfrs.retrieval.extract import extract_descriptors
from sfrs.retrieval.index import search
from sfrs.retrieval.recall import count_queries_without_positive, recall_from_predictions
from sfrs.utils.io import atomic_path


def extract_split(
    model: torch.nn.Module,
    split: Split,
    *,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    query_resize: str = "squash",
    progress: bool = True,
) -> Tuple[np.ndarray, np.ndarray, Dict[str, float]]:
    """Descriptors (float32) of the database and the queries of ``split``, with timings."""
    was_training = model.training
    model.eval()
    try:
        seconds: Dict[str, float] = {}
        start = time.perf_counter()
        database = extract_descriptors(
            model, split.database_paths, model.transform(), batch_size=batch_size, device=device,
            num_workers=num_workers, progress=f"{split.split} database" if progress else False,
        )
        seconds["extract_database"] = time.perf_counter() - start
        start = time.perf_counter()
        queries = extract_descriptors(
            model, split.query_paths, model.transform(resize=query_resize),
            batch_size=batch_size if query_resize == "squash" else 1, device=device,
            num_workers=num_workers, progress=f"{split.split} queries" if progress else False,
        )
        seconds["extract_queries"] = time.perf_counter() - start
    finally:
        model.train(was_training)
    return np.asarray(database), np.asarray(queries), seconds


def recall_report(
    split: Split,
    database: np.ndarray,
    queries: np.ndarray,
    *,
    ns: Sequence[int] = (1, 5, 10, 20),
    threshold: float = 25.0,
    index: str = "Flat",
) -> Tuple[Dict[str, Any], np.ndarray]:
    """Search the database (top-max(N) only) and compute Recall@N; returns (report, predictions)."""
    start = time.perf_counter()
    _, predictions = search(queries, database, k=max(ns), index=index)
    search_seconds = time.perf_counter() - start
    positives = split.positives(threshold)
    recalls = recall_from_predictions(predictions, positives, ns)
    report = {
        "dataset": split.dataset,
        "split": split.split,
        "protocol": split.protocol,
        "num_database": split.num_database,
        "num_queries": split.num_queries,
        "queries_without_positive": int(count_queries_without_positive(positives)),
        "threshold_m": float(threshold),
        "recall": {str(n): float(recalls[n]) for n in ns},
        "descriptor_dim": int(database.shape[1]),
        "index": index,
        "seconds": {"search": search_seconds},
    }
    return report, predictions


def evaluate_split(
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
    save_descriptors: Optional[Union[str, Path]] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """Extract, search and score one split; the report has the fields ``sfrs-eval --json`` writes."""
    total_start = time.perf_counter()
    database, queries, seconds = extract_split(
        model, split, device=device, batch_size=batch_size, num_workers=num_workers,
        query_resize=query_resize, progress=progress,
    )
    report, _ = recall_report(split, database, queries, ns=ns, threshold=threshold, index=index)
    report["seconds"] = {**seconds, **report["seconds"], "total": time.perf_counter() - total_start}
    if save_descriptors is not None:
        write_descriptors(save_descriptors, split, database, queries)
    return report


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
    return (
        f"{report['dataset']} [{report['split']}] {report['num_database']:,} database / "
        f"{report['num_queries']:,} queries ({report['queries_without_positive']:,} without a positive "
        f"within {report['threshold_m']:g} m), {report['descriptor_dim']}-d, index {report['index']}\n"
        f"  {recalls}\n  time: {timing}"
    )
