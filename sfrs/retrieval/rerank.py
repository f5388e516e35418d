"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) from a kNN graph and sparse vectors.

Shared by test-time re-ranking (:mod:`sfrs.retrieval.test_time`, ``sfrs-eval --rerank``)
and SFRS mining (:mod:`sfrs.training.rerank`, which documents the reference
implementation it reproduces). Only a kNN graph (N_all x (k1 + 1)) and sparse vectors of
the items actually needed are built, never an N_all x N_all matrix. Contract (checked by
``tests/training/test_rerank.py`` against a dense implementation written from it):

- X (N_all, D): the whole joint set (SFRS mining: the training queries kept for training,
  then the training database; test time: the queries, then the database). It defines
  the neighbour lists *and* the row maxima below, so it must be that whole set, not
  only the probes and candidates.
- s(i, j) = ||x_i - x_j||^2, computed in float64 from the descriptors.
- Base distance d(i, j), by ``distance``:

  - ``"reference"`` (default): d(i, j) = s(i, j)^2 / max_{m in X} s(i, m)^2 (0 when that
    maximum is 0). The reference's evaluator returns s; its re-ranking squares it and
    divides row i by the maximum of row i over the whole joint set (written as a column
    maximum followed by a transpose, the same thing for a symmetric matrix).
  - ``"squared"``: d(i, j) = s(i, j) (no squaring, no normalisation).

  In ``"reference"`` mode d is not symmetric: d(i, .) is always scaled by i's own row
  maximum, i being the item whose neighbourhood is built or the probe of the final
  distance.
- N(i, k): the first k + 1 entries of i's neighbour list (i itself first, then by s,
  ties by index). Squaring and scaling a row do not change its order, so both modes
  share one graph.
- R(i, k) = { j in N(i, k) : i in N(j, k) } (k-reciprocal neighbours).
- R*(i) = R(i, k1) united with every R(j, h), h = round(k1 / 2) (half to even, as
  ``np.around`` in the reference), for j in R(i, k1) with
  |R(j, h) ∩ R(i, k1)| > 2/3 |R(j, h)|.
- V_i[j] = exp(-d(i, j)) / sum_{j' in R*(i)} exp(-d(i, j')) for j in R*(i), else 0.
- Local query expansion: if k2 > 1, V_i <- mean of V_j over j in N(i, k2 - 1) (the first
  k2 entries of i's list); k2 = 1 (SFRS) leaves V unchanged.
- Jaccard distance d_J(i, j) = 1 - sum_m min(V_i[m], V_j[m]) / sum_m max(V_i[m], V_j[m]).
  (The reference writes the denominator as 2 - sum min, equal because each V row sums
  to 1.)
- final(p, c) = (1 - lambda) d_J(p, c) + lambda d(p, c). Defaults k1 = 20, k2 = 1,
  lambda = 0.1 (SFRS).

Remaining differences from the reference code:

- Precision: the reference works in float32 (s as ||x||^2 + ||y||^2 - 2 x.y, squared
  again, V and the Jaccard sums in float32); here s, V and the sums are float64, and the
  neighbour lists are sorted by float64 distance (:func:`knn_graph`). Where distances
  differ by less than float32 resolution (nearly identical descriptors, e.g. from an
  untrained network) the reference's own rounding decides its neighbour lists and
  ranks, so a selection can differ there; the fidelity benchmark
  (``benchmarks/difficult_positive_fidelity.py``) measures how often.
- Ties: the reference sorts with ``np.argsort``/``torch.argsort`` without asking for
  stability, so equal distances come in an implementation-defined order. Here every tie
  is broken explicitly (neighbour lists by index; equal final distances by Euclidean
  order; equal promotions by the better rank, see :func:`order_difficult_positives`).
- The neighbour list of an item with exact duplicates: the reference does not force the
  item itself first; here it always is (see :func:`knn_graph`).
- Row maxima (:func:`farthest_squared_distances`): a float32 scan keeps the 4 farthest
  candidates per row and re-measures them in float64, so the maximum is exact unless
  more than 4 items tie with it within float32 rounding (it is then within that rounding).
  That scan costs one more pass of N_all x N_all dot products, never stored.
- The candidates' Euclidean order is the caller's (the reference sorts its float32
  query-database distances with ``torch.argsort``).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import scipy.sparse as sp

from sfrs.retrieval.index import search

__all__ = [
    "DISTANCES",
    "farthest_squared_distances",
    "knn_graph",
    "rerank_candidates",
]

DISTANCES = ("reference", "squared")

# float64 elements gathered at once when computing pair distances (~32 MB).
_PAIR_CHUNK_ELEMENTS = 1 << 22
# Items whose reciprocal sets are computed at once ((k+1)^2 ids each).
_ITEM_CHUNK = 2048
# Probe rows whose Jaccard distances are computed at once.
_PROBE_CHUNK = 2048
# float32 dot products held at once while looking for each item's farthest item (~32 MB).
_SCAN_CHUNK_ELEMENTS = 1 << 23
# Farthest-item candidates per row re-measured in float64: the float32 scan only has to
# put the true farthest among them, not resolve near-ties itself.
_FARTHEST_CANDIDATES = 4


def knn_graph(descriptors: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Exact k-nearest-neighbour graph of a set with itself, ordered by float64 distance.

    A float32 faiss ``Flat`` search fetches min(N, 2k) candidates per item; they are
    re-measured in float64 and sorted. Nearly identical descriptors (an untrained network)
    have neighbour distances closer together than float32 resolves; the float64 order
    keeps the graph a function of the descriptors alone, as the dense definition. It is
    exact unless more than k items lie within float32 rounding of the k-th distance.

    Args:
        descriptors: (N, D) float descriptors.
        k: neighbours per item, self included; 1 <= k <= N.
    Returns:
        distances: (N, k) float32 squared L2 distances (from the float64 values; the self
        entry is 0).
        indices: (N, k) int64; ``indices[i, 0] == i`` always (self first even among exact
        twins), the rest ordered by float64 distance, ties by index.
    """
    descriptors = np.asarray(descriptors)
    if descriptors.ndim != 2 or descriptors.shape[0] == 0:
        raise ValueError(f"descriptors must be a non-empty (N, D) array, got shape {descriptors.shape}")
    num = descriptors.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num:
        raise ValueError(f"k must be an integer in [1, {num}] (self included), got {k!r}")
    fetch = min(num, 2 * int(k))
    _, indices = search(descriptors, descriptors, fetch, index="Flat")

    own = np.arange(num)
    is_self = indices == own[:, None]
    # Without self in the row (more than `fetch` twins), self replaces the last entry.
    missing = ~is_self.any(axis=1)
    indices[missing, -1] = own[missing]
    is_self[missing, -1] = True
    exact = _pair_distances(descriptors, np.repeat(own, fetch), indices.ravel()).reshape(num, fetch)
    exact[is_self] = 0
    # Sort key: self first, then distance, then index.
    order = np.lexsort((indices, exact, ~is_self), axis=1)[:, : int(k)]
    return (
        np.take_along_axis(exact, order, axis=1).astype(np.float32),
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


def farthest_squared_distances(descriptors: np.ndarray, items: Optional[np.ndarray] = None) -> np.ndarray:
    """max over the whole set of ||x_i - x_m||^2 for each requested item i, in float64.

    The reference normalises row i of its distance matrix by this maximum (squared) over
    the joint set. It is found without an N x N matrix: blocks of rows are scanned in
    float32 (||x_m||^2 - 2 x_i.x_m, one matrix product per block), the few largest per row
    are kept and re-measured exactly in float64.

    Args:
        descriptors: (N, D) float descriptors: the whole set the maximum runs over.
        items: (I,) item ids (default: all N).
    Returns:
        (I,) float64 maxima (0 for a set of identical vectors).
    """
    x = np.asarray(descriptors)
    if x.ndim != 2 or x.shape[0] == 0 or x.dtype.kind != "f":
        raise ValueError(f"descriptors must be a non-empty float (N, D) array, got {x.dtype} {x.shape}")
    num = x.shape[0]
    items = np.arange(num, dtype=np.int64) if items is None else np.asarray(items)
    if items.ndim != 1 or (items.size and items.dtype.kind not in "iu"):
        raise ValueError(f"items must be a 1-d array of item ids, got {items.dtype} {items.shape}")
    items = items.astype(np.int64)
    if items.size and (items.min() < 0 or items.max() >= num):
        raise ValueError(f"item ids must lie in [0, {num}), got range [{items.min()}, {items.max()}]")
    if items.size == 0:
        return np.empty(0, dtype=np.float64)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.einsum("ij,ij->i", x32, x32)
    count = min(_FARTHEST_CANDIDATES, num)
    picks = np.empty((len(items), count), dtype=np.int64)
    step = max(1, _SCAN_CHUNK_ELEMENTS // num)
    for start in range(0, len(items), step):
        stop = min(start + step, len(items))
        score = x32[items[start:stop]] @ x32.T
        score *= -2
        score += norms[None, :]  # ||x_i||^2 is constant along the row: not needed to rank
        picks[start:stop] = np.argpartition(score, num - count, axis=1)[:, num - count:]
    exact = _pair_distances(x, np.repeat(items, count), picks.ravel()).reshape(len(items), count)
    return exact.max(axis=1)


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
    distance: str = "reference",
) -> np.ndarray:
    """k-reciprocal re-ranked distances final(probe, candidate), from a kNN graph only.

    See the module docstring for the exact definition.

    Args:
        descriptors: (N_all, D) L2-normalised descriptors of the whole joint set the
            reference re-ranks over: for SFRS mining, the training queries kept for
            training followed by the whole training database (queries without a positive
            are not part of it). Neighbourhoods and, with ``distance="reference"``, the
            row maxima run over all N_all rows, so a subset gives different results.
        probes: (P,) item ids of the probes (for SFRS: the training queries, as ids into
            ``descriptors``).
        candidates: (P, C) item ids to re-rank for each probe (for SFRS: the probe's
            feature-nearest positives, database ids shifted by the number of queries);
            -1 marks padding.
        k1: size of the k-reciprocal neighbourhood (20 in SFRS); needs N_all >= k1 + 1.
        k2: size of the local query expansion (1 = none); 1 <= k2 <= k1 + 1.
        lam: weight lambda of the base distance, in [0, 1].
        graph: (distances, indices) from :func:`knn_graph` over ``descriptors`` with at
            least k1 + 1 columns; computed when None. Only the indices are used.
        distance: base distance, one of :data:`DISTANCES`: ``"reference"`` (squared
            distance squared again, divided by its row maximum over the joint set, as the
            reference) or ``"squared"`` (plain squared Euclidean distance).
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
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
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
        graph = knn_graph(x, k1 + 1)
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
    if distance == "reference":
        # Every probe is in raw_items (each list starts with the item itself).
        owners = np.concatenate([rows, _positions(raw_items, first)])
        scale = farthest_squared_distances(x, raw_items) ** 2
        distances = np.divide(
            distances**2, scale[owners], out=np.zeros_like(distances), where=scale[owners] > 0
        )
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
