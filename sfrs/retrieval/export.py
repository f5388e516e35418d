"""Descriptors written to one HDF5 file for use outside sfrs (``--save-descriptors``).

Layout::

    database, queries            (N, D) / (Q, D) float32, rows in file order
    database_utm, query_utm      (N, 2) / (Q, 2) float64 metres (labelled splits only)
    database_paths, query_paths  UTF-8 strings
    attrs: dataset, split        (unlabelled folders: dataset "unlabelled", split "")
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import h5py
import numpy as np

from sfrs.data import Split
from sfrs.utils.io import atomic_path


def write_descriptors(path: Union[str, Path], split: Split, database: np.ndarray, queries: np.ndarray) -> None:
    """HDF5 with ``database`` (N, D), ``queries`` (Q, D), their UTMs and image paths."""
    write_descriptor_file(
        path, database, queries, split.database_paths, split.query_paths,
        database_utm=split.database_utm, query_utm=split.query_utm, dataset=split.dataset, split=split.split,
    )


def write_descriptor_file(
    path: Union[str, Path],
    database: np.ndarray,
    queries: np.ndarray,
    database_paths: Sequence[str],
    query_paths: Sequence[str],
    *,
    database_utm: Optional[np.ndarray] = None,
    query_utm: Optional[np.ndarray] = None,
    dataset: str = "unlabelled",
    split: str = "",
) -> None:
    """The layout above; the UTM datasets only when coordinates are given (images without
    coordinates have none to record)."""
    strings = h5py.string_dtype(encoding="utf-8")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("database", data=np.asarray(database).astype(np.float32, copy=False))
            handle.create_dataset("queries", data=np.asarray(queries).astype(np.float32, copy=False))
            if database_utm is not None and query_utm is not None:
                handle.create_dataset("database_utm", data=np.asarray(database_utm, dtype=np.float64))
                handle.create_dataset("query_utm", data=np.asarray(query_utm, dtype=np.float64))
            handle.create_dataset("database_paths", data=[str(p) for p in database_paths], dtype=strings)
            handle.create_dataset("query_paths", data=[str(p) for p in query_paths], dtype=strings)
            handle.attrs["dataset"] = dataset
            handle.attrs["split"] = split
