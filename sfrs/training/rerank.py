"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) on a kNN graph, for SFRS mining.

SFRS (Ge et al., ECCV 2020) re-ranks each training query's feature-nearest positives
with k-reciprocal (Jaccard) re-ranking and takes those re-ranking promotes most as the
"difficult positives". The reference implementation re-ranks on a dense
(queries + database)^2 matrix; here only a kNN graph (N_all x (k1 + 1)) and sparse
vectors of the items actually needed are built. The result is defined as follows (the
contract that ``tests/training/test_rerank.py`` checks against a dense implementation):

- X (N_all, D): all items, L2-normalised (training queries followed by database images);
  d(i, j) = ||x_i - x_j||^2, computed in float64.
- N(i, k): the first k + 1 entries of i's nearest-neighbour list (i itself first, then by
  distance, ties by index).
- R(i, k) = { j in N(i, k) : i in N(j, k) } (k-reciprocal neighbours).
- R*(i) = R(i, k1) united with every R(j, h), h = round(k1 / 2) (half to even, as
  ``np.around`` in the reference), for j in R(i, k1) with
  |R(j, h) ∩ R(i, k1)| > 2/3 |R(j, h)|.
- V_i[j] = exp(-d(i, j)) / sum_{j' in R*(i)} exp(-d(i, j')) for j in R*(i), else 0.
- Local query expansion: if k2 > 1, V_i <- mean of V_j over j in N(i, k2 - 1) (the first
  k2 entries of i's list); k2 = 1 leaves V unchanged.
- Jaccard distance d_J(i, j) = 1 - sum_m min(V_i[m], V_j[m]) / sum_m max(V_i[m], V_j[m]).
- final(i, j) = (1 - lambda) d_J(i, j) + lambda d(i, j). Defaults k1 = 20, k2 = 1,
  lambda = 0.1 (SFRS).

Differences from the reference code: d is the plain squared distance (the reference
divides each column by its maximum first), and the neighbour lists come from an exact
faiss search in float32 (a near-tie closer than float32 resolution may order differently
from a float64 sort).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import scipy.sparse as sp

from sfrs.retrieval.index import search

__all__ = ["knn_graph", "order_difficult_positives", "rerank_candidates"]

# float64 elements gathered at once when computing pair distances (~32 MB).
_PAIR_CHUNK_ELEMENTS = 1 << 22
# Items whose reciprocal sets are computed at once ((k+1)^2 ids each).
_ITEM_CHUNK = 2048
# Probe rows whose Jaccard distances are computed at once.
_PROBE_CHUNK = 2048


def knn_graph(descriptors: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Exact k-nearest-neighbour graph of a set with itself (faiss ``Flat``, squared L2).

    Args:
        descriptors: (N, D) float descriptors.
        k: neighbours per item, self included; 1 <= k <= N.
    Returns:
        distances: (N, k) float32 squared L2 distances (clipped at 0; the self entry is 0).
        indices: (N, k) int64; ``indices[i, 0] == i`` always (with duplicated vectors the
        search may rank a twin first: self is moved to the front), the rest ordered by
        distance, ties by index.
    """
    descriptors = np.asarray(descriptors)
    if descriptors.ndim != 2 or descriptors.shape[0] == 0:
        raise ValueError(f"descriptors must be a non-empty (N, D) array, got shape {descriptors.shape}")
    num = descriptors.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num:
        raise ValueError(f"k must be an integer in [1, {num}] (self included), got {k!r}")
    distances, indices = search(descriptors, descriptors, int(k), index="Flat")
    distances = np.maximum(distances, 0)

    own = np.arange(num)[:, None]
    is_self = indices == own
    # Without self in the row (more than k twins), self replaces the last entry.
    missing = ~is_self.any(axis=1)
    indices[missing, -1] = np.arange(num)[missing]
    is_self[missing, -1] = True
    distances[is_self] = 0
    # Sort key: self first, then distance, then index.
    order = np.lexsort((indices, distances, ~is_self), axis=1)
    return (
        np.take_along_axis(distances, order, axis=1).astype(np.float32),
        np.take_along_axis(indices, order, axis=1).astype(np.int64),
    )


def _pair_distances(x: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """||x[first] - x[second]||^2 in float64 for paired id arrays, chunked over pairs.

    Reciprocal neighbourhoods are symmetric, so most pairs come twice, once each way;
    each unordered pair is computed once (the gathers of D-dim rows dominate the cost).
    """
    keys = np.minimum(first, second) * x.shape[0] + np.maximum(first, second)
    keys, inverse = np.unique(keys, return_inverse=True)
    low, high = keys // x.shape[0], keys % x.shape[0]
    out = np.empty(len(keys), dtype=np.float64)
    step = max(1, _PAIR_CHUNK_ELEMENTS // max(1, x.shape[1]))
    for start in range(0, len(keys), step):
        stop = start + step
        diff = x[low[start:stop]].astype(np.float64) - x[high[start:stop]]
        out[start:stop] = np.einsum("ij,ij->i", diff, diff)
    return out[inverse.reshape(-1)]


def _reciprocal(neighbours: np.ndarray, items: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """N(i, k) of each item and which of its entries are in R(i, k).

    Returns:
        lists: (len(items), k + 1) ids, N(i, k).
        mask: (len(items), k + 1) bool, True where ``lists[i, a]`` is in R(i, k).
    """
    lists = neighbours[items, : k + 1]
    mask = np.empty(lists.shape, dtype=bool)
    for start in range(0, len(items), _ITEM_CHUNK):
        stop = start + _ITEM_CHUNK
        back = neighbours[lists[start:stop], : k + 1]  # (n, k+1, k+1): N(j, k) of each j
        mask[start:stop] = (back == items[start:stop, None, None]).any(axis=-1)
    return lists, mask


def _expanded_sets(
    neighbours: np.ndarray, items: np.ndarray, k1: int
) -> Tuple[np.ndarray, np.ndarray]:
    """R*(i) of each item as (row, id) pairs, sorted and unique.

    Returns:
        rows: positions into ``items``. ids: the members of R*(items[row]).
    """
    half = int(round(k1 / 2))
    lists, recip = _reciprocal(neighbours, items, k1)
    members = np.unique(lists[recip])
    half_lists, half_recip = _reciprocal(neighbours, members, half)

    row_parts = [np.nonzero(recip)[0]]
    id_parts = [lists[recip]]
    for start in range(0, len(items), _ITEM_CHUNK):
        stop = min(start + _ITEM_CHUNK, len(items))
        own = np.where(recip[start:stop], lists[start:stop], -1)  # R(i, k1), -1 elsewhere
        where = np.searchsorted(members, lists[start:stop])
        where = np.minimum(where, len(members) - 1)  # non-members are masked out below
        sub = half_lists[where]  # (n, k1+1, h+1): N(j, h) for each slot j of N(i, k1)
        sub_mask = half_recip[where] & recip[start:stop, :, None]  # R(j, h) for j in R(i, k1)
        shared = (sub[..., None] == own[:, None, None, :]).any(axis=-1) & sub_mask
        size = sub_mask.sum(axis=-1)
        # Integer form of |R(j,h) ∩ R(i,k1)| > 2/3 |R(j,h)| (no rounding at multiples of 3).
        accept = recip[start:stop] & (3 * shared.sum(axis=-1) > 2 * size)
        take = sub_mask & accept[..., None]
        row_parts.append(start + np.nonzero(take)[0])
        id_parts.append(sub[take])

    rows = np.concatenate(row_parts).astype(np.int64)
    ids = np.concatenate(id_parts).astype(np.int64)
    keys = np.unique(rows * neighbours.shape[0] + ids)
    return keys // neighbours.shape[0], keys % neighbours.shape[0]


def _positions(sorted_items: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` (all present) in the sorted array ``sorted_items``."""
    return np.searchsorted(sorted_items, ids)


def rerank_candidates(
    descriptors: np.ndarray,
    probes: np.ndarray,
    candidates: np.ndarray,
    k1: int = 20,
    k2: int = 1,
    lam: float = 0.1,
    graph: Optional[Tuple[np.ndarray, np.ndarray]] = None,
) -> np.ndarray:
    """k-reciprocal re-ranked distances final(probe, candidate), from a kNN graph only.

    See the module docstring for the exact definition.

    Args:
        descriptors: (N_all, D) L2-normalised descriptors of all items.
        probes: (P,) item ids of the probes (e.g. the training queries).
        candidates: (P, C) item ids to re-rank for each probe; -1 marks padding.
        k1: size of the k-reciprocal neighbourhood (20 in SFRS); needs N_all >= k1 + 1.
        k2: size of the local query expansion (1 = none); 1 <= k2 <= k1 + 1.
        lam: weight lambda of the original distance, in [0, 1].
        graph: (distances, indices) from :func:`knn_graph` over ``descriptors`` with at
            least k1 + 1 columns; computed when None. Only the indices are used.
    Returns:
        (P, C) float64 final distances; +inf at padding.
    """
    x = np.asarray(descriptors)
    if x.ndim != 2 or x.dtype.kind != "f":
        raise ValueError(f"descriptors must be a float (N, D) array, got {x.dtype} {x.shape}")
    num = x.shape[0]
    if isinstance(k1, bool) or not isinstance(k1, (int, np.integer)) or k1 < 1:
        raise ValueError(f"k1 must be a positive integer, got {k1!r}")
    if isinstance(k2, bool) or not isinstance(k2, (int, np.integer)) or not 1 <= k2 <= k1 + 1:
        raise ValueError(f"k2 must be an integer in [1, k1 + 1 = {k1 + 1}], got {k2!r}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam!r}")
    if num < k1 + 1:
        raise ValueError(f"k1={k1} needs at least k1 + 1 = {k1 + 1} items, got {num}")
    probes = np.asarray(probes)
    candidates = np.asarray(candidates)
    if probes.ndim != 1 or candidates.ndim != 2 or candidates.shape[0] != probes.shape[0]:
        raise ValueError(
            f"probes must have shape (P,) and candidates (P, C), got {probes.shape} and {candidates.shape}"
        )
    if probes.dtype.kind not in "iu" or (candidates.size and candidates.dtype.kind not in "iu"):
        raise ValueError("probes and candidates must be integer item ids")
    probes = probes.astype(np.int64)
    candidates = candidates.astype(np.int64)
    if probes.size and (probes.min() < 0 or probes.max() >= num):
        raise ValueError(f"probe ids must lie in [0, {num}), got range [{probes.min()}, {probes.max()}]")
    valid = candidates >= 0
    if valid.any() and candidates[valid].max() >= num:
        raise ValueError(f"candidate ids must lie in [0, {num}) or be -1, got {candidates[valid].max()}")
    if (candidates < -1).any():
        raise ValueError("candidate ids must be >= 0, or -1 for padding")

    result = np.full(candidates.shape, np.inf, dtype=np.float64)
    if not valid.any():
        return result

    if graph is None:
        graph = knn_graph(np.ascontiguousarray(x, dtype=np.float32), k1 + 1)
    neighbours = np.asarray(graph[1])
    if neighbours.ndim != 2 or neighbours.shape[0] != num or neighbours.shape[1] < k1 + 1:
        raise ValueError(
            f"graph indices must have shape ({num}, >= k1 + 1 = {k1 + 1}), got {neighbours.shape}; "
            f"build it with knn_graph(descriptors, {k1 + 1})"
        )
    if not np.array_equal(neighbours[:, 0], np.arange(num)):
        raise ValueError("graph indices must list each item itself first (use knn_graph)")
    neighbours = neighbours.astype(np.int64, copy=False)

    # Items whose (expanded) V is compared, and items whose raw V the expansion averages.
    final_items = np.unique(np.concatenate([probes, candidates[valid]]))
    raw_items = np.unique(neighbours[final_items, :k2])

    rows, ids = _expanded_sets(neighbours, raw_items, k1)
    probe_rows, slots = np.nonzero(valid)
    first = probes[probe_rows]
    second = candidates[probe_rows, slots]
    # One call for the V weights and the lambda term: the two share most pairs.
    distances = _pair_distances(x, np.concatenate([raw_items[rows], first]), np.concatenate([ids, second]))
    weights = np.exp(-distances[: len(rows)])
    original = distances[len(rows):]
    weights /= np.bincount(rows, weights=weights, minlength=len(raw_items))[rows]
    raw_v = sp.csr_matrix((weights, (rows, ids)), shape=(len(raw_items), num))

    expansion = _positions(raw_items, neighbours[final_items, :k2])  # (F, k2)
    if k2 > 1:
        # Row f of the averaging matrix: 1/k2 at the raw V rows of N(final_items[f], k2 - 1).
        average = sp.csr_matrix(
            (np.full(expansion.size, 1.0 / k2), (np.repeat(np.arange(len(final_items)), k2), expansion.ravel())),
            shape=(len(final_items), len(raw_items)),
        )
        v = (average @ raw_v).tocsr()
    else:
        v = raw_v[expansion[:, 0]]

    jaccard = np.empty(len(first), dtype=np.float64)
    step = _PROBE_CHUNK * max(1, candidates.shape[1])
    for start in range(0, len(first), step):
        stop = start + step
        vp = v[_positions(final_items, first[start:stop])]
        vc = v[_positions(final_items, second[start:stop])]
        overlap = np.asarray(vp.minimum(vc).sum(axis=1)).ravel()
        union = np.asarray(vp.maximum(vc).sum(axis=1)).ravel()
        jaccard[start:stop] = 1.0 - overlap / union
    result[probe_rows, slots] = (1.0 - lam) * jaccard + lam * original
    return result


def order_difficult_positives(candidates: np.ndarray, final_distances: np.ndarray, keep: int) -> np.ndarray:
    """Difficult positives: the candidates re-ranking promotes most first (SFRS §3.3).

    Per row, with euclidean_rank the position among the valid candidates (given nearest
    first) and reranked_rank the rank by ``final_distances`` (ties by Euclidean order),
    promotion = euclidean_rank - reranked_rank. Candidates with promotion > 0 come first,
    by promotion descending (ties: better reranked rank first), then the others in
    Euclidean order.

    Args:
        candidates: (P, C) item ids in Euclidean order; -1 padding (at the end).
        final_distances: (P, C) re-ranked distances (e.g. from :func:`rerank_candidates`);
            must be finite at valid candidates, ignored at padding.
        keep: number of positives kept per row.
    Returns:
        (P, keep) int64 item ids, -1 padded.
    """
    candidates = np.asarray(candidates)
    final_distances = np.asarray(final_distances, dtype=np.float64)
    if candidates.ndim != 2 or final_distances.shape != candidates.shape:
        raise ValueError(
            f"candidates and final_distances must have the same (P, C) shape, got "
            f"{candidates.shape} and {final_distances.shape}"
        )
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 0:
        raise ValueError(f"keep must be a non-negative integer, got {keep!r}")
    candidates = candidates.astype(np.int64)
    valid = candidates >= 0
    if not np.isfinite(final_distances[valid]).all():
        raise ValueError("final_distances must be finite at every valid candidate")
    num_rows, width = candidates.shape

    euclidean = np.cumsum(valid, axis=1) - 1  # rank among valid entries
    by_final = np.argsort(np.where(valid, final_distances, np.inf), axis=1, kind="stable")
    reranked = np.empty_like(by_final)
    np.put_along_axis(reranked, by_final, np.broadcast_to(np.arange(width), by_final.shape), axis=1)
    promotion = euclidean - reranked
    group = np.where(~valid, 2, np.where(promotion > 0, 0, 1))
    primary = np.where(group == 0, -promotion, 0)
    secondary = np.where(group == 0, reranked, euclidean)
    order = np.lexsort((secondary, primary, group), axis=1)  # last key sorts first

    ranked = np.take_along_axis(np.where(valid, candidates, -1), order, axis=1)
    out = np.full((num_rows, keep), -1, dtype=np.int64)
    out[:, : min(keep, width)] = ranked[:, :keep]
    return out
