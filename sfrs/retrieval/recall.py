"""Recall@N of place recognition and the helpers around it.

Recall@N = percentage of queries with at least one database image within the positive
radius (25 m) among their N nearest descriptors (NetVLAD, Arandjelovic et al., CVPR 2016).
Queries without any positive stay in the denominator (they can never be correct), as in
the reference evaluations.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from sfrs.data.geo import EVAL_POSITIVE_RADIUS_M, positives_within
from sfrs.retrieval.index import search

DEFAULT_NS = (1, 5, 10, 20)


def _check_ns(ns: Sequence[int]) -> list:
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


def recall_from_predictions(
    predictions: np.ndarray, positives: Sequence[np.ndarray], ns: Sequence[int] = DEFAULT_NS
) -> Dict[int, float]:
    """Recall@N in percent from ranked predictions.

    Args:
        predictions: (Q, k) int database indices, best first; -1 counts as a miss.
        positives: Q arrays of positive database indices (empty for a query without one,
            which counts as a failure).
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


def recall_at_n(
    query_desc: np.ndarray,
    db_desc: np.ndarray,
    query_utm: np.ndarray,
    db_utm: np.ndarray,
    ns: Sequence[int] = DEFAULT_NS,
    threshold: float = EVAL_POSITIVE_RADIUS_M,
    index: str = "Flat",
) -> Dict[int, float]:
    """Recall@N (percent) of descriptors against UTM ground truth.

    Args:
        query_desc: (Q, D), db_desc: (N, D) descriptors.
        query_utm: (Q, 2), db_utm: (N, 2) positions in metres.
        ns: the N values. threshold: positive radius in metres. index: faiss factory string.
    """
    ns = _check_ns(ns)
    _, predictions = search(query_desc, db_desc, k=max(ns), index=index)
    positives = positives_within(np.asarray(query_utm), np.asarray(db_utm, dtype=np.float64), threshold)
    return recall_from_predictions(predictions, positives, ns)


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
    place_ids = np.asarray(place_ids)
    if predictions.ndim != 2:
        raise ValueError(f"predictions must have shape (Q, k), got {predictions.shape}")
    if keep < 1:
        raise ValueError(f"keep must be positive, got {keep}")
    if predictions.size and predictions.max() >= len(place_ids):
        raise ValueError(f"prediction index {predictions.max()} out of range for {len(place_ids)} place ids")
    result = np.full((predictions.shape[0], keep), -1, dtype=np.int64)
    for q, row in enumerate(predictions):
        row = row[row >= 0]
        # np.unique's return_index gives each place's first occurrence; sort to restore rank order.
        _, first = np.unique(place_ids[row], return_index=True)
        kept = row[np.sort(first)[:keep]]
        result[q, : kept.size] = kept
    return result
