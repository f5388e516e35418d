"""A split's descriptors written to one HDF5 file for use outside sfrs (``--save-descriptors``).

Layout::

    database, queries            (N, D) / (Q, D) float32, rows in file order
    database_utm, query_utm      (N, 2) / (Q, 2) float64 metres
    database_paths, query_paths  UTF-8 strings
    attrs: dataset, split
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import h5py
import numpy as np

from sfrs.data import Split
from sfrs.utils.io import atomic_path


def write_descriptors(path: Union[str, Path], split: Split, database: np.ndarray, queries: np.ndarray) -> None:
    """HDF5 with ``database`` (N, D), ``queries`` (Q, D), their UTMs and image paths."""
    strings = h5py.string_dtype(encoding="utf-8")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("database", data=database.astype(np.float32, copy=False))
            handle.create_dataset("queries", data=queries.astype(np.float32, copy=False))
            handle.create_dataset("database_utm", data=np.asarray(split.database_utm, dtype=np.float64))
            handle.create_dataset("query_utm", data=np.asarray(split.query_utm, dtype=np.float64))
            handle.create_dataset("database_paths", data=list(split.database_paths), dtype=strings)
            handle.create_dataset("query_paths", data=list(split.query_paths), dtype=strings)
            handle.attrs["dataset"] = split.dataset
            handle.attrs["split"] = split.split
