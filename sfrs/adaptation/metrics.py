"""Recall@N and average precision of one evaluation task from descriptors in memory.

Recall@N goes through :func:`sfrs.retrieval.recall_report` (faiss top-k, the one place
recall is counted). AP needs the rank of every positive, so it ranks the whole database
exactly, in chunks of queries: it is the University-1652 evaluation's definition (Zheng
et al., ACM MM 2020, from person re-identification): for the k-th hit (k = 1..P) at
1-based rank r_k, ``AP = (1/P) sum_k ((k - 1) / (r_k - 1) + k / r_k) / 2`` with the first
term 1 when r_k = 1 (the mean of the precision just before and at each hit), averaged
over the queries that have at least one positive.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from sfrs.adaptation.target import EvalTask
from sfrs.retrieval import recall_report

#: similarity matrix entries per chunk of queries (64M float32 = 256 MB).
CHUNK_ENTRIES = 1 << 26


def average_precision(hit_ranks: np.ndarray) -> float:
    """University-1652 AP from the sorted 0-based ranks of one query's positives."""
    ranks = np.asarray(hit_ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("average precision needs at least one positive")
    k = np.arange(ranks.size, dtype=np.float64)
    precision = (k + 1) / (ranks + 1)
    before = np.where(ranks > 0, k / np.maximum(ranks, 1), 1.0)
    return float(np.mean((before + precision) / 2))


def mean_average_precision(
    queries: np.ndarray, database: np.ndarray, positives: Sequence[np.ndarray]
) -> Optional[float]:
    """Mean AP in percent over the queries with a positive; None when no query has one.

    Args:
        queries: (Q, D) and database: (N, D) descriptors; similarity is the dot product
            (L2-normalised rows: the order of the L2 distance search).
        positives: Q arrays of database indices.
    """
    queries = np.asarray(queries, dtype=np.float32)
    database = np.asarray(database, dtype=np.float32)
    if len(positives) != queries.shape[0]:
        raise ValueError(f"{queries.shape[0]} queries but {len(positives)} positive lists")
    chunk = max(1, CHUNK_ENTRIES // max(1, database.shape[0]))
    values: List[float] = []
    for start in range(0, queries.shape[0], chunk):
        scores = queries[start:start + chunk] @ database.T
        for row, score in enumerate(scores):
            positive = np.asarray(positives[start + row], dtype=np.int64)
            if positive.size == 0:
                continue
            # stable: equal scores keep database order, as a stable argsort of the distances would
            order = np.argsort(-score, kind="stable")
            hits = np.flatnonzero(np.isin(order, positive))
            values.append(average_precision(hits))
    return 100.0 * float(np.mean(values)) if values else None


def evaluate_task(
    task: EvalTask, database: np.ndarray, queries: np.ndarray, *, ns: Sequence[int], index: str = "Flat"
) -> Dict[str, Any]:
    """``{"recall": {"1": %, ...}, "ap": % or None, "num_queries", "num_database",
    "queries_without_positive", "threshold_m", "nms", "dim"}`` of one task.

    AP is left out (None) under spatial NMS, whose ranking counts one image per place.
    """
    report, _ = recall_report(task.split, database, queries, ns=ns, threshold=task.threshold_m, index=index, nms=task.nms)
    ap = None if task.nms else mean_average_precision(queries, database, task.positives)
    return {
        "recall": report["recall"],
        "ap": ap,
        "num_queries": report["num_queries"],
        "num_database": report["num_database"],
        "queries_without_positive": report["queries_without_positive"],
        "threshold_m": report["threshold_m"],
        "nms": report["nms"],
        "dim": int(database.shape[1]),
    }
