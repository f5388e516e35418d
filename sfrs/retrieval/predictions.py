"""The predictions CSV: one row per (query, rank) of the ranking that was scored.

One writer for both modes of ``sfrs-eval``: without coordinates (``--queries/--database``,
``predictions.csv``) the rows hold ``query,rank,database_image,distance``; on a labelled
split (``--predictions FILE.csv``) each row adds ``metres`` (between the database image and
the query, UTM) and ``correct`` (1 when the database image is within the evaluation radius,
i.e. counted by Recall@N; 0 otherwise).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from sfrs.data import Split
from sfrs.retrieval.recall import correct_matrix
from sfrs.utils.io import atomic_path

HEADER = ["query", "rank", "database_image", "distance"]
GROUND_TRUTH_HEADER = ["metres", "correct"]


def write_predictions_csv(
    path: Union[str, Path],
    query_names: Sequence[str],
    database_names: Sequence[str],
    distances: np.ndarray,
    indices: np.ndarray,
    *,
    metres: Optional[np.ndarray] = None,
    correct: Optional[np.ndarray] = None,
) -> int:
    """``query,rank,database_image,distance[,metres,correct]`` rows, written atomically.

    Args:
        distances, indices: (Q, k) as ranked (rank 1 = best; distance = squared L2 between
            descriptors); -1 indices (NMS ran out of places, an approximate index found fewer
            than k) are left out.
        metres, correct: (Q, k) ground truth of each ranked image (:func:`ground_truth`);
            both or neither.
    Returns:
        The number of rows written (without the header).
    """
    if (metres is None) != (correct is None):
        raise ValueError("metres and correct go together: give both or neither")
    labelled = metres is not None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER + (GROUND_TRUTH_HEADER if labelled else []))
    rows = 0
    for q, (query, row_dist, row_idx) in enumerate(zip(query_names, distances, indices)):
        for j, (dist, idx) in enumerate(zip(row_dist, row_idx)):
            if idx < 0:
                continue
            fields = [query, j + 1, database_names[int(idx)], f"{float(dist):.6f}"]
            if labelled:
                fields += [f"{float(metres[q, j]):.2f}", int(bool(correct[q, j]))]
            writer.writerow(fields)
            rows += 1
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
    return rows


def ground_truth(split: Split, indices: np.ndarray, positives: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Metres to the query and correctness of every ranked database image.

    Args:
        indices: (Q, k) ranked database indices of all Q queries (-1 = none).
        positives: Q arrays of database indices within the evaluation radius.
    Returns:
        metres (Q, k) float64 (NaN where the index is -1), correct (Q, k) bool.
    """
    indices = np.asarray(indices)
    database_utm = np.asarray(split.database_utm, dtype=np.float64)
    query_utm = np.asarray(split.query_utm, dtype=np.float64)
    offsets = database_utm[np.maximum(indices, 0)] - query_utm[:, None, :]
    metres = np.where(indices >= 0, np.linalg.norm(offsets, axis=-1), np.nan)
    return metres, correct_matrix(indices, positives)


def write_split_predictions(
    path: Union[str, Path],
    split: Split,
    distances: np.ndarray,
    indices: np.ndarray,
    positives: Sequence[np.ndarray],
    top_k: int,
) -> int:
    """The first ``top_k`` columns of a labelled split's ranking as a predictions CSV
    (image paths as the split lists them); returns the number of rows."""
    indices = np.asarray(indices)[:, :top_k]
    metres, correct = ground_truth(split, indices, positives)
    return write_predictions_csv(
        path, split.query_paths, split.database_paths, np.asarray(distances)[:, :top_k], indices,
        metres=metres, correct=correct,
    )
