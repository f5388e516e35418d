"""Retrieval without ground truth: the top-k database images of each query image, and
the ``predictions.csv`` that ``sfrs-eval --queries DIR --database DIR`` writes."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
import torch

from sfrs.retrieval.extract import extract_descriptors
from sfrs.retrieval.index import search
from sfrs.utils.io import atomic_path


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
