"""Descriptors of a split's database and queries, kept in memory or streamed to HDF5.

In memory, each process of a torchrun job encodes its shard and every process receives
all rows (:func:`~sfrs.retrieval.extract.extract_descriptors_sharded`). Streamed, rows go
to resumable files ``<stream_dir>/<stem>_{database,queries}.h5`` keyed by the model's
weights, the image paths, the transform and the dtype
(:func:`~sfrs.retrieval.stream.extract_to_hdf5`), for databases too large for memory and
for reruns after an interruption.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from sfrs import distributed
from sfrs.data import Split
from sfrs.errors import ConfigError
from sfrs.retrieval.extract import extract_descriptors_sharded
from sfrs.retrieval.stream import Descriptors, descriptor_fingerprint, extract_to_hdf5
from sfrs.retrieval.test_time import TestTime
from sfrs.utils.hashing import model_fingerprint as model_weights_hash


def stream_prefix(split: Split) -> str:
    """File-name stem for a split's streamed descriptors, e.g. ``pitts30k_test``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{split.dataset}_{split.split}").strip("_")


def _extract_set(
    model: torch.nn.Module,
    paths: Sequence[str],
    transform: Any,
    kind: str,
    label: str,
    *,
    model_hash: Optional[str],
    encoding: str,
    stream_file: Optional[Path],
    half: bool,
    device: Union[str, torch.device],
    batch_size: int,
    num_workers: int,
    progress: bool,
) -> Descriptors:
    """(N, D) descriptors of one image list, in memory or in ``stream_file`` (dataset ``kind``).
    ``encoding``: what besides weights and transform shapes the rows (views, precision), for the cache key."""
    bar = label if progress else False
    if stream_file is None:
        # under torchrun each process encodes its shard; every process gets all rows
        return extract_descriptors_sharded(
            model, paths, transform, batch_size=batch_size, device=device, num_workers=num_workers, progress=bar,
        )
    if distributed.world_size() > 1:
        raise ConfigError("streaming descriptors to HDF5 runs in a single process; start it without torchrun")
    assert model_hash is not None
    key = f"{transform!r} {encoding}" if encoding else transform
    fingerprint = descriptor_fingerprint(model_hash, paths, key, np.float16 if half else np.float32)
    return extract_to_hdf5(
        model, paths, transform, stream_file, kind, fingerprint=fingerprint,
        batch_size=batch_size, device=device, num_workers=num_workers, half=half, progress=bar,
    )


def extract_split(
    model: torch.nn.Module,
    split: Split,
    *,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    query_resize: Optional[int] = None,
    progress: bool = True,
    stream_dir: Optional[Union[str, Path]] = None,
    stream_name: Optional[str] = None,
    half: bool = False,
    test_time: Optional[TestTime] = None,
) -> Tuple[Descriptors, Descriptors, Dict[str, float]]:
    """Descriptors of the database (N, D) and the queries (Q, D) of ``split``, with timings.

    Args:
        query_resize: None resizes queries like the database (to the model's input
            size); N keeps their aspect ratio with a shorter side of N pixels (a batch of
            mixed sizes is run in groups of equal size).
        stream_dir: None keeps float32 arrays in memory. Otherwise rows are streamed to
            ``<stream_dir>/<stream_name>_database.h5`` and ``..._queries.h5``
            (datasets ``database`` / ``queries``) and :class:`HDF5Descriptors` are
            returned; a rerun continues or reuses them (:func:`extract_to_hdf5`).
        stream_name: file-name stem, default :func:`stream_prefix` of the split.
        half: store float16 (streamed files only).
        test_time: image sizes, query views, precision and memory format
            (:class:`~sfrs.retrieval.test_time.TestTime`; default: the model's input size,
            one view, fp32). With ``nearest_crop`` / ``maj_voting`` the query rows hold
            the 5 crop descriptors side by side (Q, 5 * D). Queries with 5 crops are
            extracted ``batch_size // 5`` at a time (the same images per forward pass).
    Returns:
        (database, queries, seconds) with ``seconds`` = {"extract_database": s,
        "extract_queries": s}.
    """
    if half and stream_dir is None:
        raise ValueError("half=True stores float16 files and needs stream_dir")
    test_time = test_time or TestTime()
    was_training = model.training
    model.eval()
    stem = stream_name or stream_prefix(split)
    common = dict(
        model_hash=model_weights_hash(model) if stream_dir is not None else None, half=half,
        device=device, batch_size=batch_size, num_workers=num_workers, progress=progress,
    )
    # Aspect-preserving queries keep the normal batch size: extract_descriptors runs a
    # batch of mixed sizes in groups of equal size, so nothing is padded or squashed.
    sets = (
        ("database", split.database_paths, test_time.database_transform(model), test_time.encoder(model, query=False)),
        ("queries", split.query_paths, test_time.query_transform(model, query_resize),
         test_time.encoder(model, query=True)),
    )
    results: List[Descriptors] = []
    seconds: Dict[str, float] = {}
    if test_time.channels_last:
        model.to(memory_format=torch.channels_last)
    try:
        for kind, paths, transform, encoder in sets:
            start = time.perf_counter()
            target = Path(stream_dir) / f"{stem}_{kind}.h5" if stream_dir is not None else None
            encoding = encoder.describe() if encoder is not model else ""
            # five crops per query: as many images per forward pass as a batch of whole images
            images_per_item = test_time.images_per_query if kind == "queries" else 1
            options = {**common, "batch_size": max(1, batch_size // images_per_item)}
            results.append(_extract_set(
                encoder, list(paths), transform, kind, f"{split.split} {kind}", stream_file=target,
                encoding=encoding, **options,
            ))
            seconds[f"extract_{kind}"] = time.perf_counter() - start
    finally:
        if test_time.channels_last:
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    return results[0], results[1], seconds
