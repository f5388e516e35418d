"""Rank a split's database for each query and turn the ranking into the Recall@N report.

The report is the JSON of ``sfrs-eval --json``; :func:`format_report` prints it. The
split's conventions enter here: the positive radius (``threshold``) and spatial
non-maximum suppression over database places (``nms``: Tokyo 24/7 counts each panorama
once, see ``sfrs.data.conventions``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from sfrs.data import Split
from sfrs.errors import DataError
from sfrs.retrieval.index import search
from sfrs.retrieval.protocol import describe_protocol
from sfrs.retrieval.recall import (
    count_queries_without_positive,
    recall_at_n,
    recall_breakdown,
    spatial_nms_columns,
    take_columns,
)
from sfrs.retrieval.stream import Descriptors, search_hdf5
from sfrs.retrieval.test_time import TestTime
from sfrs.retrieval.view_search import rerank_top, search_views

#: candidates searched per kept result under spatial NMS (Tokyo 24/7 has 12 views per
#: panorama, so 20x leaves room for every view of max(N) places).
NMS_CANDIDATES_PER_RESULT = 20


@dataclass(frozen=True, eq=False)
class Ranking:
    """The ranked database of every query, exactly as Recall@N scores it.

    Attributes:
        indices: (Q, k) int64 database indices, best first (after NMS when requested);
            -1 = no further result (NMS ran out of places, or an approximate index).
        distances: (Q, k) float32 squared L2 distance between the query's and the database
            image's descriptors, as the faiss index computed it (descriptors are
            L2-normalised, so 2 - 2 cos); NaN where ``indices`` is -1.
    """

    indices: np.ndarray
    distances: np.ndarray


def _search_top(queries: Descriptors, database: Descriptors, k: int, index: str) -> Tuple[np.ndarray, np.ndarray]:
    """(distances, indices), each (Q, min(k, N)); streamed descriptors are read in chunks."""
    if isinstance(queries, np.ndarray) and isinstance(database, np.ndarray):
        return search(queries, database, k=k, index=index)
    return search_hdf5(queries, database, k, index=index)


def rank_database(
    split: Split, database: Descriptors, queries: Descriptors, k: int, *, index: str = "Flat", nms: bool = False,
    test_time: Optional[TestTime] = None,
) -> Ranking:
    """The top-``k`` database images of each query with their descriptor distances.

    With ``nms`` the search returns ``k * NMS_CANDIDATES_PER_RESULT`` candidates and only
    the first hit per ``split.database_place_ids`` is kept (-1 pads rows that run out of
    distinct places). ``test_time``: ``nearest_crop`` / ``maj_voting`` search each query's
    views and merge them (queries then hold (Q, views * D)); ``rerank`` re-orders each
    query's first ``rerank.top`` results (searched that deep), before NMS
    (:mod:`sfrs.retrieval.test_time`).

    Raises:
        DataError: ``nms`` on a split without database place ids.
    """
    if nms and split.database_place_ids is None:
        raise DataError(
            f"{split.dataset} [{split.split}]: spatial NMS needs database place ids "
            "(pano ids in VG file names, folders in Tokyo 24/7), and this split has none"
        )
    test_time = test_time or TestTime()
    fetch = k * NMS_CANDIDATES_PER_RESULT if nms else k
    if test_time.rerank is not None:
        fetch = max(fetch, test_time.rerank.top)
    if test_time.views > 1:
        distances, indices = search_views(queries, database, test_time.views, fetch, method=test_time.method,
                                          index=index, majority_weight=test_time.majority_weight)
    else:
        distances, indices = _search_top(queries, database, fetch, index)
    if test_time.rerank is not None:
        distances, indices = rerank_top(queries, database, distances, indices, test_time.rerank)
    if not nms:
        indices, distances = indices[:, :k], distances[:, :k]
        return Ranking(indices=indices, distances=np.where(indices >= 0, distances, np.nan).astype(np.float32))
    columns = spatial_nms_columns(indices, split.database_place_ids, keep=k)
    return Ranking(indices=take_columns(indices, columns, -1),
                   distances=take_columns(distances.astype(np.float32), columns, np.nan))


def ranked_predictions(
    split: Split, database: Descriptors, queries: Descriptors, k: int, *, index: str = "Flat", nms: bool = False
) -> np.ndarray:
    """(Q, k) int64 database indices, best first: :func:`rank_database` without distances."""
    return rank_database(split, database, queries, k, index=index, nms=nms).indices


def recall_report(
    split: Split,
    database: Descriptors,
    queries: Descriptors,
    *,
    ns: Sequence[int] = (1, 5, 10, 20),
    threshold: float = 25.0,
    index: str = "Flat",
    nms: bool = False,
) -> Tuple[Dict[str, Any], np.ndarray]:
    """Search the database (top-max(N) only) and compute Recall@N; returns (report, predictions).

    ``database`` (N, D) and ``queries`` (Q, D) are arrays or :class:`HDF5Descriptors`.
    ``predictions`` is (Q, max(N)) int64 (after NMS when ``nms``). The report holds
    ``breakdown`` / ``breakdown_queries`` only when the split has boolean query attributes.
    """
    report, ranking = ranked_report(split, database, queries, ns=ns, threshold=threshold, index=index, nms=nms)
    return report, ranking.indices


def ranked_report(
    split: Split,
    database: Descriptors,
    queries: Descriptors,
    *,
    ns: Sequence[int] = (1, 5, 10, 20),
    threshold: float = 25.0,
    index: str = "Flat",
    nms: bool = False,
    depth: Optional[int] = None,
    test_time: Optional[TestTime] = None,
) -> Tuple[Dict[str, Any], Ranking]:
    """:func:`recall_report` with the whole :class:`Ranking` (distances too), ranked
    ``max(max(ns), depth)`` deep; Recall@N is computed from this very ranking.
    ``test_time``: view merging and re-ranking, see :func:`rank_database`."""
    ns = [int(n) for n in ns]
    start = time.perf_counter()
    ranking = rank_database(split, database, queries, max(ns + [int(depth or 1)]), index=index, nms=nms,
                            test_time=test_time)
    predictions = ranking.indices
    search_seconds = time.perf_counter() - start
    positives = split.positives(threshold)
    recalls = recall_at_n(predictions, positives, ns)
    report: Dict[str, Any] = {
        "dataset": split.dataset,
        "split": split.split,
        "protocol": split.protocol,
        "num_database": split.num_database,
        "num_queries": split.num_queries,
        "queries_without_positive": int(count_queries_without_positive(positives)),
        "threshold_m": float(threshold),
        "nms": bool(nms),
        "recall": {str(n): float(recalls[n]) for n in ns},
        "descriptor_dim": int(database.shape[1]),
        "index": index,
        "seconds": {"search": search_seconds},
    }
    breakdown, counts = recall_breakdown(predictions, positives, split.query_attributes, ns)
    if breakdown:
        report["breakdown"] = breakdown
        report["breakdown_queries"] = counts
    return report, ranking


def format_report(report: Dict[str, Any]) -> str:
    """A few human lines for the terminal."""
    recalls = "  ".join(f"R@{n}: {value:5.1f}" for n, value in report["recall"].items())
    seconds = report["seconds"]
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
    lines = [
        f"{report['dataset']} [{report['split']}] {report['num_database']:,} database / "
        f"{report['num_queries']:,} queries ({report['queries_without_positive']:,} without a positive "
        f"within {report['threshold_m']:g} m), {report['descriptor_dim']}-d, index {report['index']}",
        f"  {recalls}",
    ]
    if "evaluation_protocol" in report:
        lines.append(f"  protocol: {describe_protocol(report['evaluation_protocol'])}")
    counts = report.get("breakdown_queries", {})
    for group, values in report.get("breakdown", {}).items():
        group_recalls = "  ".join(f"R@{n}: {value:5.1f}" for n, value in values.items())
        lines.append(f"  {group} ({counts.get(group, 0):,} queries): {group_recalls}")
    lines.append(f"  time: {timing}")
    return "\n".join(lines)
