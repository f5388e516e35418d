"""Full-database Recall@N evaluation of a model on one split: extract -> search -> report.

A split is evaluated with its data set's conventions (see ``sfrs.data.conventions``) unless
an argument overrides them (:func:`~sfrs.retrieval.protocol.resolve_protocol`): the
positive radius (``threshold``, 25 m), how queries are resized (``query_resize``: like the
database, or a shorter side of N pixels keeping the aspect ratio, 640 for Tokyo 24/7) and
spatial non-maximum suppression over database places (``nms``: Tokyo 24/7 counts each
panorama once). The report states the protocol and where each value came from.
Descriptors stay in memory or are streamed to resumable HDF5 files (``stream_dir``) for
large databases.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from sfrs import distributed
from sfrs.data import Split
from sfrs.retrieval.export import write_descriptors
from sfrs.retrieval.protocol import EvalProtocol, resolve_protocol
from sfrs.retrieval.report import ranked_report
from sfrs.retrieval.split_descriptors import extract_split
from sfrs.retrieval.test_time import TestTime, with_test_time


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything one evaluation produced.

    Attributes:
        report: the JSON-ready report (fields of ``sfrs-eval --json``).
        predictions: (Q, max(max(N), depth)) int64 database indices, best first, after NMS
            when it was requested (-1 = no further distinct place).
        distances: the same shape, float32 squared L2 descriptor distances of
            ``predictions`` as the index computed them (NaN where the index is -1).
        positives: Q int64 arrays of database indices within the positive radius.
        protocol: the radius, NMS and query resize used, with their sources.
    """

    report: Dict[str, Any]
    predictions: np.ndarray
    distances: np.ndarray
    positives: List[np.ndarray]
    protocol: EvalProtocol


def evaluate(
    model: torch.nn.Module,
    split: Split,
    *,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    ns: Sequence[int] = (1, 5, 10, 20),
    conventions: Optional[str] = None,
    threshold: Optional[float] = None,
    index: str = "Flat",
    query_resize: Optional[int] = None,
    nms: Optional[bool] = None,
    stream_dir: Optional[Union[str, Path]] = None,
    stream_name: Optional[str] = None,
    half: bool = False,
    save_descriptors: Optional[Union[str, Path]] = None,
    depth: Optional[int] = None,
    progress: bool = True,
    test_time: Optional[TestTime] = None,
) -> Optional[Evaluation]:
    """Extract, search and score one split; the report plus the ranked predictions.

    ``conventions`` names the data set whose conventions apply (default ``split.dataset``);
    ``threshold``, ``nms`` and ``query_resize`` override them when given (see
    :func:`~sfrs.retrieval.protocol.resolve_protocol`). See :func:`~sfrs.retrieval.split_descriptors.extract_split` for ``query_resize``,
    ``stream_dir``, ``stream_name``, ``half`` and
    :func:`~sfrs.retrieval.report.ranked_predictions` for ``nms``. ``save_descriptors``
    writes both sets to one HDF5 file (:func:`~sfrs.retrieval.export.write_descriptors`).
    ``depth`` ranks more than max(N) database images per query (a longer predictions
    list); Recall@N is computed from the same ranking.
    ``test_time``: test image size or shorter side, query views (``central_crop``,
    ``five_crops``, ``nearest_crop``, ``maj_voting``), k-reciprocal re-ranking, precision
    (:class:`~sfrs.retrieval.test_time.TestTime`, default: none of them); a crop method
    replaces a query resize of the conventions. All of it is recorded in the report's
    ``evaluation_protocol`` with the database and query image transforms in words.
    Under torchrun the extraction is sharded over the processes and the search runs
    once: processes other than the main one return ``None`` (and write nothing).
    """
    total_start = time.perf_counter()
    test_time = test_time or TestTime()
    protocol = resolve_protocol(split, conventions, threshold=threshold, nms=nms, query_resize=query_resize)
    protocol = with_test_time(protocol, test_time)
    database, queries, seconds = extract_split(
        model, split, device=device, batch_size=batch_size, num_workers=num_workers,
        query_resize=protocol.query_resize, progress=progress, stream_dir=stream_dir, stream_name=stream_name, half=half,
        test_time=test_time,
    )
    if not distributed.is_main():
        return None
    report, ranking = ranked_report(
        split, database, queries, ns=ns, threshold=protocol.threshold_m, index=index, nms=protocol.nms, depth=depth,
        test_time=test_time,
    )
    report["query_resize"] = protocol.query_resize
    database_images, query_images = test_time.describe_images(model, protocol.query_resize)
    report["evaluation_protocol"] = {
        **protocol.to_json(), **test_time.to_json(),
        "database_images": database_images, "query_images": query_images,
    }
    report["seconds"] = {**seconds, **report["seconds"], "total": time.perf_counter() - total_start}
    if save_descriptors is not None:
        write_descriptors(save_descriptors, split, np.asarray(database), np.asarray(queries))
    return Evaluation(report=report, predictions=ranking.indices, distances=ranking.distances,
                      positives=split.positives(protocol.threshold_m), protocol=protocol)


def evaluate_split(model: torch.nn.Module, split: Split, **options: Any) -> Dict[str, Any]:
    """The report of :func:`evaluate` (the fields ``sfrs-eval --json`` writes).

    Keyword arguments as for :func:`evaluate`: ``device``, ``batch_size``,
    ``num_workers``, ``ns``, ``conventions``, ``threshold``, ``index``, ``query_resize``, ``nms``,
    ``stream_dir``, ``stream_name``, ``half``, ``save_descriptors``, ``depth``, ``progress``, ``test_time``.
    """
    return evaluate(model, split, **options).report
