"""Retrieval without ground truth: the top-k database images of each query image
(``sfrs-eval --queries DIR --database DIR``; the CSV is written by
:func:`sfrs.retrieval.predictions.write_predictions_csv`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from sfrs.retrieval.export import write_descriptor_file
from sfrs.retrieval.extract import extract_descriptors
from sfrs.retrieval.index import search


def retrieve(
    model: torch.nn.Module,
    query_paths: Sequence[str],
    database_paths: Sequence[str],
    k: int,
    *,
    index: str = "Flat",
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    save_descriptors: Optional[Union[str, Path]] = None,
    progress: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """Top-``k`` database images of each query image, without any ground truth.

    ``save_descriptors`` writes both sets and their paths to one HDF5 file
    (:mod:`sfrs.retrieval.export`, without UTM datasets).

    Returns:
        distances (Q, min(k, N)) float32 squared L2, ascending; indices (Q, min(k, N)) int64.
    """
    database = extract_descriptors(
        model, database_paths, model.transform(), batch_size=batch_size, device=device,
        num_workers=num_workers, progress="database" if progress else False,
    )
    queries = extract_descriptors(
        model, query_paths, model.transform(), batch_size=batch_size, device=device,
        num_workers=num_workers, progress="queries" if progress else False,
    )
    if save_descriptors is not None:
        write_descriptor_file(save_descriptors, database, queries, database_paths, query_paths)
    return search(queries, database, k=k, index=index)

