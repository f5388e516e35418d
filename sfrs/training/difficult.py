"""Difficult positives (SFRS §3.3) and the teacher's labels that go with them.

A query's difficult positives are picked among its positives (database images within
the training radius) by descriptor distance: the ``candidates`` feature-nearest are
taken, and from generation 1 they are re-ranked with k-reciprocal encoding over the
joint set (every kept training query, then every database image, as the reference);
those re-ranking promotes
come first, then the unchanged ones, and demoted ones are dropped
(:func:`sfrs.training.rerank.order_difficult_positives`). The reference picks them with
the current student's descriptor cache at every refresh; picking them once per
generation with the teacher is an option (``mining.difficult_positives_by``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from sfrs.errors import DataError
from sfrs.training.mining import squared_distances
from sfrs.training.rerank import order_difficult_positives, rerank_candidates
from sfrs.training.softlabels import SoftLabels


def nearest_candidates(
    query_descriptors: np.ndarray,
    database_descriptors: np.ndarray,
    candidate_lists: Sequence[np.ndarray],
    count: int,
) -> np.ndarray:
    """The ``count`` feature-nearest of each query's candidate database ids.

    Args:
        query_descriptors: (R, D), row r for ``candidate_lists[r]``.
        database_descriptors: (N, D).
        candidate_lists: R arrays of database ids.
        count: columns of the result.
    Returns:
        (R, count) int64 database ids, nearest first (ties by list order), -1 padded.
    """
    out = np.full((len(candidate_lists), count), -1, dtype=np.int64)
    for row, ids in enumerate(candidate_lists):
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(squared_distances(query_descriptors[row], database_descriptors[ids]), kind="stable")[:count]
        out[row, : order.size] = ids[order]
    return out


def pick_difficult_positives(
    candidates: np.ndarray,
    *,
    keep: int,
    rerank: bool,
    probes: Optional[np.ndarray] = None,
    query_descriptors: Optional[np.ndarray] = None,
    database_descriptors: Optional[np.ndarray] = None,
    k1: int = 20,
    k2: int = 1,
    lam: float = 0.1,
    distance: str = "reference",
) -> np.ndarray:
    """Difficult positives of each probe query, (R, keep) database ids, -1 padded.

    Args:
        candidates: (R, C) database ids in feature order (:func:`nearest_candidates`).
        keep: how many to keep.
        rerank: False keeps the ``keep`` nearest (generation 0 in the reference).
        probes: (R,) kept-query rows of the candidates' rows (re-ranking only).
        query_descriptors: (Q, D) every kept training query (row order) and
            database_descriptors: (N, D): together the joint set re-ranking runs on.
        k1, k2, lam, distance: k-reciprocal re-ranking parameters
            (:func:`sfrs.training.rerank.rerank_candidates`).
    """
    if not rerank:
        return candidates[:, :keep].copy()
    offset = query_descriptors.shape[0]
    joint = np.ascontiguousarray(np.concatenate([query_descriptors, database_descriptors]), dtype=np.float32)
    joint_candidates = np.where(candidates >= 0, candidates + offset, -1)
    final = rerank_candidates(joint, np.asarray(probes, dtype=np.int64), joint_candidates,
                              k1=k1, k2=k2, lam=lam, distance=distance)
    return order_difficult_positives(candidates, final, keep)


def labelled_candidates(labels: SoftLabels, rows: np.ndarray) -> list:
    """The teacher-labelled positives of each kept-query row (the student picks among them)."""
    return [labels.positive_ids[r][labels.positive_ids[r] >= 0] for r in rows]


def lookup_labels(labels: SoftLabels, rows: np.ndarray, difficult: np.ndarray) -> np.ndarray:
    """The teacher's similarities (R, M, 9) of each row's difficult positives (0 at -1).

    Raises:
        DataError: a difficult positive the teacher did not label (a label file that does
            not belong to this training set).
    """
    known = labels.positive_ids[rows]  # (R, P)
    match = difficult[:, :, None] == known[:, None, :]  # (R, M, P)
    found = match.any(axis=-1)
    valid = difficult >= 0
    if np.any(valid & ~found):
        r, m = np.argwhere(valid & ~found)[0]
        raise DataError(
            f"soft labels of generation {labels.generation}: no label for query row {rows[r]}, "
            f"database image {difficult[r, m]}; delete the label file to recompute it"
        )
    column = match.argmax(axis=-1)  # (R, M)
    out = np.take_along_axis(labels.similarities[rows], column[:, :, None], axis=1)
    out[~valid] = 0.0
    return out.astype(np.float32)
