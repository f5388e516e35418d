"""Recall@N of place recognition from ranked predictions, and the helpers around it.

Recall@N = percentage of queries with at least one database image within the positive
radius (25 m) among their N nearest descriptors (NetVLAD, Arandjelovic et al., CVPR 2016).
Queries without any positive stay in the denominator (they can never be correct), as in
the reference evaluations. :func:`recall_at_n` is the one place this is counted: the
report of a split (``sfrs-eval``, validation during training, the cross-dataset report)
and its per-group breakdown both go through it.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from sfrs.errors import DataError

DEFAULT_NS = (1, 5, 10, 20)

#: name of the complementary group in recall breakdowns (``not_<attribute>`` otherwise).
_COMPLEMENT_NAMES = {"night": "day"}


def _check_ns(ns: Sequence[int]) -> List[int]:
    ns = [int(n) for n in ns]
    if not ns or min(ns) < 1:
        raise ValueError(f"recall N values must be positive integers, got {list(ns)}")
    return ns


def per_query_first_correct_rank(predictions: np.ndarray, positives: Sequence[np.ndarray]) -> np.ndarray:
    """0-based rank of the first correct prediction of each query, or -1 when none is.

    Args:
        predictions: (Q, k) int database indices, best first; -1 entries are misses.
        positives: Q arrays of database indices within the positive radius.
    Returns:
        (Q,) int64 ranks.
    """
    predictions = np.asarray(predictions)
    if predictions.ndim != 2:
        raise ValueError(f"predictions must have shape (Q, k), got {predictions.shape}")
    if len(positives) != predictions.shape[0]:
        raise ValueError(f"{predictions.shape[0]} prediction rows but {len(positives)} positive lists")
    ranks = np.full(predictions.shape[0], -1, dtype=np.int64)
    for q, (row, pos) in enumerate(zip(predictions, positives)):
        if len(pos) == 0:
            continue
        # -1 is never a database index, so padding can never count as a hit.
        hits = np.flatnonzero(np.isin(row, pos) & (row >= 0))
        if hits.size:
            ranks[q] = hits[0]
    return ranks


def correct_matrix(predictions: np.ndarray, positives: Sequence[np.ndarray]) -> np.ndarray:
    """(Q, k) bool: whether each ranked database image is a positive of its query.

    The one definition of "correct" that galleries, maps and the predictions CSV share with
    :func:`per_query_first_correct_rank`; -1 (no prediction) is never correct.
    """
    predictions = np.asarray(predictions)
    if predictions.ndim != 2:
        raise ValueError(f"predictions must have shape (Q, k), got {predictions.shape}")
    if len(positives) != predictions.shape[0]:
        raise ValueError(f"{predictions.shape[0]} prediction rows but {len(positives)} positive lists")
    correct = np.zeros(predictions.shape, dtype=bool)
    for q, (row, pos) in enumerate(zip(predictions, positives)):
        if len(pos):
            correct[q] = np.isin(row, pos) & (row >= 0)
    return correct


def recall_at_n(
    predictions: np.ndarray, positives: Sequence[np.ndarray], ns: Sequence[int] = DEFAULT_NS
) -> Dict[int, float]:
    """Recall@N in percent from ranked predictions.

    Args:
        predictions: (Q, k) int database indices, best first (e.g. the second output of
            :func:`sfrs.retrieval.index.search`); -1 counts as a miss.
        positives: Q arrays of positive database indices (``Split.positives(radius)``;
            empty for a query without one, which counts as a failure).
        ns: the N values; an N larger than k uses all k columns (the database, or the
            search, had fewer than N results).
    Returns:
        {N: percent of the Q queries}.
    """
    ns = _check_ns(ns)
    ranks = per_query_first_correct_rank(predictions, positives)
    num = max(len(ranks), 1)
    return {n: 100.0 * float(np.count_nonzero((ranks >= 0) & (ranks < n))) / num for n in ns}


def count_queries_without_positive(positives: Sequence[np.ndarray]) -> int:
    """Number of queries whose positive list is empty."""
    return int(sum(1 for pos in positives if len(pos) == 0))


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
    predictions = np.asarray(predictions)
    num_queries = predictions.shape[0]
    breakdown: Dict[str, Dict[str, float]] = {}
    counts: Dict[str, int] = {}
    for name, values in sorted(attributes.items()):
        values = np.asarray(values)
        if values.dtype != np.bool_:
            continue
        if values.shape != (num_queries,):
            raise DataError(f"query attribute '{name}' has shape {values.shape}, expected ({num_queries},)")
        for group, mask in ((name, values), (_COMPLEMENT_NAMES.get(name, f"not_{name}"), ~values)):
            rows = np.flatnonzero(mask)
            if rows.size == 0:
                continue
            recalls = recall_at_n(predictions[rows], [positives[i] for i in rows], ns)
            breakdown[group] = {str(n): value for n, value in recalls.items()}
            counts[group] = int(rows.size)
    return breakdown, counts


def spatial_nms_columns(predictions: np.ndarray, place_ids: np.ndarray, keep: int) -> np.ndarray:
    """Columns of ``predictions`` that spatial NMS keeps: the first (best) hit per database
    place in each row (Tokyo 24/7 protocol).

    Columns rather than indices, so that the search distances can follow the same selection.

    Args:
        predictions: (Q, k) int database indices, best first; -1 entries are skipped.
        place_ids: (N,) place id of each database image (e.g. its panorama).
        keep: columns of the result.
    Returns:
        (Q, keep) int64 columns into ``predictions``, padded with -1 when a row has fewer
        than ``keep`` distinct places.
    """
    predictions = np.asarray(predictions)
    place_ids = np.asarray(place_ids)
    if predictions.ndim != 2:
        raise ValueError(f"predictions must have shape (Q, k), got {predictions.shape}")
    if keep < 1:
        raise ValueError(f"keep must be positive, got {keep}")
    if predictions.size and predictions.max() >= len(place_ids):
        raise ValueError(f"prediction index {predictions.max()} out of range for {len(place_ids)} place ids")
    result = np.full((predictions.shape[0], keep), -1, dtype=np.int64)
    for q, row in enumerate(predictions):
        valid = np.flatnonzero(row >= 0)
        # np.unique's return_index gives each place's first occurrence; sort to restore rank order.
        _, first = np.unique(place_ids[row[valid]], return_index=True)
        kept = valid[np.sort(first)[:keep]]
        result[q, : kept.size] = kept
    return result


def take_columns(values: np.ndarray, columns: np.ndarray, fill) -> np.ndarray:
    """``values[q, columns[q, j]]``, ``fill`` where the column is -1 (same shape as ``columns``)."""
    values = np.asarray(values)
    columns = np.asarray(columns)
    if values.shape[1] == 0:
        return np.full(columns.shape, fill, dtype=values.dtype)
    taken = np.take_along_axis(values, np.maximum(columns, 0), axis=1)
    return np.where(columns >= 0, taken, np.asarray(fill, dtype=values.dtype))


def spatial_nms(predictions: np.ndarray, place_ids: np.ndarray, keep: int) -> np.ndarray:
    """Keep only the first (best) hit per database place in each row (Tokyo 24/7 protocol).

    Args:
        predictions: (Q, k) int database indices, best first; -1 entries are skipped.
        place_ids: (N,) place id of each database image (e.g. its panorama).
        keep: columns of the result.
    Returns:
        (Q, keep) int64, padded with -1 when a row has fewer than ``keep`` distinct places.
    """
    predictions = np.asarray(predictions)
    columns = spatial_nms_columns(predictions, place_ids, keep)
    return take_columns(predictions, columns, -1).astype(np.int64, copy=False)
