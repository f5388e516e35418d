"""SFRS difficult positives: k-reciprocal re-ranking on a kNN graph and the promotion rule.

SFRS (Ge et al., ECCV 2020) re-ranks each training query's feature-nearest positives
with k-reciprocal (Jaccard) re-ranking (Zhong et al., CVPR 2017) and trains on those the
re-ranking promotes. This module reproduces the public reference implementation
(OpenIBL: ``examples/netvlad_img_sfrs.py`` ``update_sampler``, ``ibl/utils/rerank.py``,
``ibl/utils/data/sampler.py`` ``DistributedRandomDiffTupleSampler``,
``ibl/evaluators.py`` ``pairwise_distance``, ``ibl/utils/data/dataset.py``), which does:

- at every descriptor-cache refresh of generation >= 1, with the current student's
  descriptors, one re-ranking call whose probes are *all* training queries and whose
  gallery is *all* training database images; its joint set is those queries (only the
  ones with a positive within 10 m: the data set drops the others before training)
  followed by the whole training database; k1 = 20, k2 = 1, lambda = 0.1. Generation 0
  does not re-rank (the final distance is the Euclidean one, nothing moves, and the rule
  below keeps the 10 nearest);
- per query, the 20 feature-nearest positives (Euclidean order) are the candidates and
  up to 10 are kept with the rule of :func:`order_difficult_positives`.

The re-ranking itself (its contract, and where it differs from the reference code) is
:mod:`sfrs.retrieval.rerank`, shared with test-time re-ranking; this module re-exports it
and adds the SFRS promotion rule.
"""
from __future__ import annotations

import numpy as np

from sfrs.retrieval.rerank import DISTANCES, farthest_squared_distances, knn_graph, rerank_candidates

__all__ = [
    "DISTANCES",
    "farthest_squared_distances",
    "knn_graph",
    "order_difficult_positives",
    "rerank_candidates",
]


def order_difficult_positives(candidates: np.ndarray, final_distances: np.ndarray, keep: int) -> np.ndarray:
    """Difficult positives: what re-ranking promotes, then what it leaves in place (SFRS).

    Per row, with euclidean_rank a candidate's position among the valid candidates (given
    nearest first) and reranked_rank its rank by ``final_distances`` (equal distances in
    Euclidean order), promotion = euclidean_rank - reranked_rank:

    1. promoted candidates (promotion > 0), most promoted first; equal promotions by the
       better reranked rank, which for equal promotions is also the better Euclidean rank;
    2. then unchanged candidates (promotion = 0), in Euclidean order;
    3. demoted candidates (promotion < 0) are dropped.

    The first ``keep`` are returned, -1 padded: a row may hold fewer than ``keep`` even
    when more candidates exist. When nothing moves (generation 0, where the reference's
    final distance is the Euclidean one), this keeps the ``keep`` nearest.

    Reference tie behaviour: it sorts promotions with ``torch.argsort`` (unstable), which
    in practice keeps this order for up to 16 promoted candidates (libstdc++ sorts such
    short ranges by insertion); with 17 to 19 promoted of 20 its order among equal
    promotions is implementation-defined.

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
    # Groups: 0 promoted, 1 unchanged, 2 demoted or padding (never returned).
    group = np.where(valid & (promotion > 0), 0, np.where(valid & (promotion == 0), 1, 2))
    order = np.lexsort((euclidean, np.where(group == 0, -promotion, 0), group), axis=1)  # last key first

    ranked = np.take_along_axis(np.where(group < 2, candidates, -1), order, axis=1)
    out = np.full((num_rows, keep), -1, dtype=np.int64)
    out[:, : min(keep, width)] = ranked[:, :keep]
    return out
