"""Searching the views of each query and merging them (``nearest_crop``, ``maj_voting``
of the VG benchmark, Berton et al., CVPR 2022), and k-reciprocal re-ranking of each
query's top results at test time; the settings live in :mod:`sfrs.retrieval.test_time`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Tuple

import numpy as np

from sfrs.errors import ConfigError
from sfrs.retrieval.index import search_index
from sfrs.retrieval.rerank import rerank_candidates

if TYPE_CHECKING:
    from sfrs.retrieval.test_time import RerankSettings

#: methods whose views are searched one by one and merged.
MERGED_METHODS = ("nearest_crop", "maj_voting")
#: the benchmark's ``--majority_weight`` default.
MAJORITY_WEIGHT = 0.01
#: (n, columns) of the votes: each crop's top-1, top-5 and top-10.
VOTE_DEPTHS = (1, 5, 10)
#: query rows searched at once by :func:`search_views`.
VIEW_SEARCH_ROWS = 2048


# -- merging the searches of the views --------------------------------------------------------------


def majority_votes(distances: np.ndarray, indices: np.ndarray, weight: float = MAJORITY_WEIGHT) -> np.ndarray:
    """Vote-adjusted distances of one query's K crop searches (``maj_voting``).

    The rule of the benchmark's ``top_n_voting`` (Berton et al., CVPR 2022, ``test.py``),
    applied for n = 1, 5 and 10 in turn: among the first n columns of every crop's list,
    a database image found c > 1 times has each of those c entries lowered by
    ``weight * c / n``. An image among every crop's top-1 thus gains at all three depths.

    Args:
        distances: (K, f) squared L2 distances, each row one crop's list, nearest first.
        indices: (K, f) database ids (-1 = none; never voted for).
    Returns:
        (K, f) float64 adjusted distances.
    """
    adjusted = np.asarray(distances, dtype=np.float64).copy()
    indices = np.asarray(indices)
    for n in VOTE_DEPTHS:
        columns = indices[:, :n]
        ids, counts = np.unique(columns[columns >= 0], return_counts=True)
        for value, count in zip(ids[counts > 1], counts[counts > 1]):
            adjusted[:, :n][columns == value] -= weight * count / n
    return adjusted


def _first_occurrences(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best distinct ids of one flattened query row: sorted by score
    (ties: crop order, then rank), each id at its best entry; -1 ids skipped."""
    valid = ids >= 0
    order = np.argsort(np.where(valid, scores, np.inf), kind="stable")
    order = order[valid[order]]
    _, first = np.unique(ids[order], return_index=True)
    return order[np.sort(first)][:k]


def _merge(scores: np.ndarray, distances: np.ndarray, indices: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    num = indices.shape[0]
    flat_ids = indices.reshape(num, -1)
    flat_scores = scores.reshape(num, -1)
    flat_distances = distances.reshape(num, -1)
    out_ids = np.full((num, k), -1, dtype=np.int64)
    out_distances = np.full((num, k), np.nan, dtype=np.float32)
    for q in range(num):
        keep = _first_occurrences(flat_scores[q], flat_ids[q], k)
        out_ids[q, : len(keep)] = flat_ids[q, keep]
        out_distances[q, : len(keep)] = flat_distances[q, keep]
    return out_distances, out_ids


def merge_nearest(distances: np.ndarray, indices: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """``nearest_crop``: the K lists of each query merged by distance, each database image
    once at its nearest distance, the first ``k`` kept.

    Args:
        distances, indices: (Q, K, f) per-crop search results (-1 ids = none).
    Returns:
        (distances (Q, k) float32, indices (Q, k) int64), -1 / NaN padded.
    """
    distances = np.asarray(distances)
    return _merge(distances, distances, np.asarray(indices), k)


def merge_majority_voting(distances: np.ndarray, indices: np.ndarray, k: int,
                          weight: float = MAJORITY_WEIGHT) -> Tuple[np.ndarray, np.ndarray]:
    """``maj_voting``: :func:`majority_votes` per query, then the merge of
    :func:`merge_nearest` on the adjusted distances. The distances returned are the
    descriptor distances of the entries kept (before the votes)."""
    distances = np.asarray(distances)
    indices = np.asarray(indices)
    adjusted = np.stack([majority_votes(distances[q], indices[q], weight) for q in range(indices.shape[0])]) \
        if indices.shape[0] else distances.astype(np.float64)
    return _merge(adjusted, distances, indices, k)


def search_views(queries: Any, database: Any, views: int, k: int, *, method: str, index: str = "Flat",
                 majority_weight: float = MAJORITY_WEIGHT) -> Tuple[np.ndarray, np.ndarray]:
    """Search every view of every query and merge them (``nearest_crop`` / ``maj_voting``).

    Memory: the index, and (rows, views, depth) results of :data:`VIEW_SEARCH_ROWS` query
    rows at a time; never a query x database matrix.

    Args:
        queries: (Q, views * D) array-like (array or HDF5), the views of a query side by side.
        database: (N, D) array-like.
        k: results per query after the merge (clipped to N).
        method: ``nearest_crop`` or ``maj_voting`` (each view searched at least 10 deep).
    Returns:
        (distances (Q, min(k, N)) float32, indices (Q, min(k, N)) int64).
    """
    from sfrs.retrieval.stream import build_index_chunked

    if method not in MERGED_METHODS:
        raise ValueError(f"method must be one of {MERGED_METHODS}, got {method!r}")
    num, dim = int(database.shape[0]), int(database.shape[1])
    if int(queries.shape[1]) != views * dim:
        raise ValueError(f"queries hold {queries.shape[1]} columns, expected {views} views x {dim}")
    width = min(int(k), num)
    depth = min(max(width, max(VOTE_DEPTHS)) if method == "maj_voting" else width, num)
    built = build_index_chunked(database, index, ef_search=max(128, depth))
    out_distances = np.empty((int(queries.shape[0]), width), dtype=np.float32)
    out_indices = np.empty((int(queries.shape[0]), width), dtype=np.int64)
    for start in range(0, int(queries.shape[0]), VIEW_SEARCH_ROWS):
        block = np.asarray(queries[start:start + VIEW_SEARCH_ROWS], dtype=np.float32)
        rows = block.shape[0]
        distances, indices = search_index(built, block.reshape(rows * views, dim), depth)
        distances = distances.reshape(rows, views, -1)
        indices = indices.reshape(rows, views, -1)
        if method == "nearest_crop":
            merged = merge_nearest(distances, indices, width)
        else:
            merged = merge_majority_voting(distances, indices, width, majority_weight)
        out_distances[start:start + rows], out_indices[start:start + rows] = merged
    return out_distances, out_indices


# -- re-ranking -----------------------------------------------------------------------------------


def rerank_top(queries: Any, database: Any, distances: np.ndarray, indices: np.ndarray,
               settings: RerankSettings) -> Tuple[np.ndarray, np.ndarray]:
    """Each query's first ``settings.top`` results re-ordered by the k-reciprocal final
    distance (:func:`sfrs.retrieval.rerank.rerank_candidates`) over the joint set
    [queries; database]; equal final distances keep the search order, results beyond
    ``top`` stay where they are. The distances returned stay the descriptor distances.

    Args:
        queries: (Q, D), database: (N, D) descriptors (read into memory).
        distances, indices: (Q, k) search results, nearest first (-1 = none).
    Raises:
        ConfigError: fewer than k1 + 1 images in the joint set.
    """
    queries = np.asarray(queries, dtype=np.float32)
    database = np.asarray(database, dtype=np.float32)
    num_queries = queries.shape[0]
    joint = np.concatenate([queries, database])
    if joint.shape[0] < settings.k1 + 1:
        raise ConfigError(f"--rerank-k1 {settings.k1} needs at least {settings.k1 + 1} queries + database images, "
                          f"the split has {joint.shape[0]}")
    top = min(settings.top, indices.shape[1])
    candidates = indices[:, :top]
    final = rerank_candidates(joint, np.arange(num_queries), np.where(candidates >= 0, candidates + num_queries, -1),
                              k1=settings.k1, k2=settings.k2, lam=float(settings.lam), distance=settings.distance)
    order = np.argsort(final, axis=1, kind="stable")
    new_indices, new_distances = indices.copy(), distances.copy()
    new_indices[:, :top] = np.take_along_axis(candidates, order, axis=1)
    new_distances[:, :top] = np.take_along_axis(distances[:, :top], order, axis=1)
    return new_distances, new_indices
