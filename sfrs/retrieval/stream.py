"""Descriptors streamed to HDF5 (resumable) and a faiss search that reads them in chunks.

For databases too large to hold twice in memory (Pitts250k: 83,952 x 4,096 float32 =
1.4 GB; 32,768-d NetVLAD without PCA: 11 GB), extraction writes rows into an HDF5
dataset as they are computed and search adds the database to the faiss index chunk by
chunk, so the only full copy in memory is the index itself.

File layout (one dataset per call; :mod:`sfrs.retrieval.split_descriptors` uses one file per set):
    <dataset_name>   (N, D) float32 or float16, rows in the order of ``paths``
    attrs: fingerprint  what produced the rows (model weights + paths + transform + dtype)
           rows_done    rows [0, rows_done) are final; recorded after each flushed chunk
           num_rows     N

Resume and mismatch policy: a rerun with the same fingerprint continues at ``rows_done``
(a finished file is reused without running the model). A file written by something else
(another fingerprint, another shape, or unreadable after a crash) is never mixed with
new rows: with ``on_mismatch="restart"`` (default, the friendlier choice for a cache
folder) the file is replaced by a fresh one and extraction starts over; with
``on_mismatch="refuse"`` a :class:`~sfrs.errors.DataError` says which file to delete.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import faiss
import h5py
import numpy as np
import torch
from torch import Tensor

from sfrs.errors import DataError
from sfrs.retrieval.extract import extract_descriptors
from sfrs.retrieval.index import as_matrix, build_index, search_index

LOG = logging.getLogger(__name__)

PathLike = Union[str, Path]
DEFAULT_CHUNK_ROWS = 1024
#: rows read per step by :func:`search_hdf5` (16,384 x 4,096 float32 = 256 MB).
SEARCH_CHUNK_ROWS = 16384
#: database rows sampled to train IVF/PQ/PCA indexes (faiss wants >= 39 per IVF list).
INDEX_TRAIN_ROWS = 65536
MISMATCH_POLICIES = ("restart", "refuse")


def descriptor_fingerprint(model_hash: str, paths: Sequence[str], transform: Any, dtype: Any) -> str:
    """16 hex digits naming everything that determines the stored rows.

    ``model_hash`` comes from :func:`sfrs.utils.hashing.model_fingerprint` (every parameter and buffer, PCA
    included; computed once per model, not per file: hashing VGG16 weights takes a
    second). The transform enters through its ``repr`` (torchvision ``Compose`` lists
    sizes, interpolation and normalisation); ``paths`` as given, so a moved data set is
    extracted again rather than trusted.
    """
    digest = hashlib.sha256()
    digest.update(model_hash.encode())
    digest.update(np.dtype(dtype).str.encode())
    digest.update(repr(transform).encode())
    digest.update(str(len(paths)).encode())
    for path in paths:
        digest.update(os.fspath(path).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class HDF5Descriptors:
    """Read-only (N, D) array-like over a descriptor dataset in an HDF5 file.

    Each read opens the file briefly, so no handle outlives a call (safe across an
    interruption and in worker processes). ``array[a:b]`` reads rows; ``np.asarray``
    reads everything (small sets only).
    """

    def __init__(self, path: PathLike, name: str) -> None:
        self.path = Path(path)
        self.name = name
        with h5py.File(self.path, "r") as handle:
            dataset = handle[name]
            self.shape: Tuple[int, int] = tuple(int(v) for v in dataset.shape)  # type: ignore[assignment]
            self.dtype = np.dtype(dataset.dtype)
            self.fingerprint = str(dataset.attrs.get("fingerprint", ""))

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, rows: Any) -> np.ndarray:
        with h5py.File(self.path, "r") as handle:
            return handle[self.name][rows]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        rows = self[:]
        return rows if dtype is None else rows.astype(dtype)

    def __repr__(self) -> str:
        return f"HDF5Descriptors({str(self.path)!r}, {self.name!r}, shape={self.shape}, dtype={self.dtype})"


#: (N, D) descriptors: an in-memory array or rows streamed to HDF5.
Descriptors = Union[np.ndarray, HDF5Descriptors]


@dataclass
class _Progress:
    """What an existing file offers for a resume."""

    rows_done: int
    reason: str = ""  # why the file cannot be reused; empty when it can


def _inspect(path: Path, name: str, fingerprint: str, shape: Tuple[int, int], dtype: np.dtype) -> _Progress:
    if not path.exists():
        return _Progress(0, "")
    try:
        with h5py.File(path, "r") as handle:
            if name not in handle:
                return _Progress(0, "")
            dataset = handle[name]
            found = str(dataset.attrs.get("fingerprint", ""))
            if found != fingerprint:
                return _Progress(0, f"it holds descriptors of another model, image list, transform or dtype "
                                    f"(fingerprint {found or 'none'}, expected {fingerprint})")
            if tuple(dataset.shape) != shape or np.dtype(dataset.dtype) != dtype:
                return _Progress(0, f"it holds a {tuple(dataset.shape)} {dataset.dtype} dataset, expected {shape} {dtype}")
            return _Progress(int(dataset.attrs.get("rows_done", 0)))
    except (OSError, KeyError) as exc:  # e.g. a file cut short by a crash during a flush
        return _Progress(0, f"it cannot be read ({' '.join(str(exc).split())})")


class _RowRecorder:
    """(N - start, D) write target for ``extract_descriptors`` that shifts rows by ``start``,
    converts them to the stored dtype and records ``rows_done`` every ``chunk`` rows.

    ``extract_descriptors`` writes consecutive slices in order (``shuffle=False``), so a
    row count is enough to describe what is final.
    """

    def __init__(self, handle: h5py.File, dataset: h5py.Dataset, start: int, chunk: int) -> None:
        self.handle = handle
        self.dataset = dataset
        self.start = start
        self.chunk = chunk
        self.done = start
        self.recorded = start
        self.shape = (dataset.shape[0] - start, dataset.shape[1])

    def __setitem__(self, rows: slice, values: np.ndarray) -> None:
        first, stop = self.start + rows.start, self.start + rows.stop
        if first != self.done:
            raise RuntimeError(f"rows written out of order: {first} after {self.done}")
        self.dataset[first:stop] = np.asarray(values).astype(self.dataset.dtype, copy=False)
        self.done = stop
        if self.done - self.recorded >= self.chunk or self.done == self.dataset.shape[0]:
            self.record()

    def record(self) -> None:
        # Rows first, then the counter, both flushed: a crash can lose a chunk, never claim one.
        self.handle.flush()
        self.dataset.attrs["rows_done"] = self.done
        self.handle.flush()
        self.recorded = self.done


def _probe_dim(model: Callable[[Tensor], Tensor], paths: Sequence[str], transform: Callable, device: Any) -> int:
    """Descriptor dimension, from one image (needed to create the dataset before the loop)."""
    out_dim = getattr(model, "out_dim", None)
    if isinstance(out_dim, int):
        return out_dim
    return int(extract_descriptors(model, list(paths[:1]), transform, batch_size=1, device=device, progress=False).shape[1])


def extract_to_hdf5(
    model: Callable[[Tensor], Tensor],
    paths: Sequence[str],
    transform: Callable,
    path: PathLike,
    dataset_name: str,
    *,
    fingerprint: str,
    batch_size: int = 32,
    device: Union[str, torch.device] = "cpu",
    num_workers: int = 0,
    half: bool = False,
    chunk: int = DEFAULT_CHUNK_ROWS,
    progress: Union[bool, str] = True,
    on_mismatch: str = "restart",
) -> HDF5Descriptors:
    """Extract descriptors of ``paths`` into ``path[dataset_name]``, resuming a previous run.

    Args:
        model: images (B, 3, H, W) -> (B, D), as for :func:`extract_descriptors`.
        paths: N image files; row i of the dataset is image i.
        transform: PIL image -> (3, H, W) tensor.
        path, dataset_name: HDF5 file and dataset.
        fingerprint: what produced the rows (:func:`descriptor_fingerprint`); a file with
            another fingerprint is never continued.
        half: store float16 (half the disk; ~1e-3 relative error on L2-normalised rows).
        chunk: rows between two progress records; an interruption loses at most this many.
        progress: tqdm bar (a string is its description).
        on_mismatch: ``"restart"`` replaces an unusable file, ``"refuse"`` raises.
    Returns:
        A read-only (N, D) :class:`HDF5Descriptors` over the finished dataset.
    Raises:
        DataError: ``on_mismatch="refuse"`` and the file is unusable; unreadable images.
    """
    if on_mismatch not in MISMATCH_POLICIES:
        raise ValueError(f"on_mismatch must be one of {MISMATCH_POLICIES}, got '{on_mismatch}'")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("no images to extract descriptors from")
    path = Path(path)
    dtype = np.dtype(np.float16 if half else np.float32)
    dim = _probe_dim(model, paths, transform, device)
    shape = (len(paths), dim)

    state = _inspect(path, dataset_name, fingerprint, shape, dtype)
    if state.reason:
        if on_mismatch == "refuse":
            raise DataError(f"{path}: cannot continue '{dataset_name}': {state.reason}; delete the file to start over")
        LOG.warning("%s: starting '%s' over: %s", path, dataset_name, state.reason)
        _discard(path, dataset_name)
    if state.rows_done >= len(paths):
        return HDF5Descriptors(path, dataset_name)

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "a") as handle:
        dataset = handle.get(dataset_name)
        if dataset is None:
            dataset = handle.create_dataset(dataset_name, shape=shape, dtype=dtype)
            dataset.attrs["fingerprint"] = fingerprint
            dataset.attrs["num_rows"] = len(paths)
            dataset.attrs["rows_done"] = 0
        recorder = _RowRecorder(handle, dataset, state.rows_done, chunk)
        if state.rows_done:
            LOG.info("%s: resuming '%s' at row %d of %d", path, dataset_name, state.rows_done, len(paths))
        extract_descriptors(
            model, paths[state.rows_done:], transform, batch_size=batch_size, device=device,
            num_workers=num_workers, progress=progress, out=recorder,
        )
        recorder.record()
    return HDF5Descriptors(path, dataset_name)


def _discard(path: Path, dataset_name: str) -> None:
    """Remove an unusable dataset; the whole file when it holds nothing else (or is unreadable).

    Deleting a dataset inside an HDF5 file does not give its space back, hence the file
    is removed whenever possible.
    """
    try:
        with h5py.File(path, "a") as handle:
            others = [key for key in handle.keys() if key != dataset_name]
            if others:
                if dataset_name in handle:
                    del handle[dataset_name]
                return
    except OSError:
        pass
    path.unlink(missing_ok=True)


def _needs_training(dim: int, index: str) -> bool:
    try:
        return not faiss.index_factory(dim, index, faiss.METRIC_L2).is_trained
    except RuntimeError:
        return False  # a bad factory string: build_index reports it with its own message


def _training_sample(database: Any, rows: int) -> np.ndarray:
    """Up to ``rows`` evenly spaced database rows (deterministic), read in one pass."""
    num = database.shape[0]
    if num <= rows:
        return np.asarray(database[:num], dtype=np.float32)
    chosen = np.linspace(0, num - 1, num=rows).astype(np.int64)
    return np.asarray(database[chosen], dtype=np.float32)  # h5py accepts increasing index lists


def build_index_chunked(
    database: Any,
    index: str = "Flat",
    *,
    chunk: int = SEARCH_CHUNK_ROWS,
    train_rows: int = INDEX_TRAIN_ROWS,
    nprobe: int = 16,
    use_gpu: Optional[bool] = None,
    ef_search: int = 128,
) -> "faiss.Index":
    """A faiss index over an (N, D) array-like (an :class:`HDF5Descriptors`, an ``h5py``
    dataset, an array), added ``chunk`` rows at a time.

    Indexes that need training (IVF, PQ, PCA) are trained on up to ``train_rows`` evenly
    spaced database rows. Other arguments: see :func:`sfrs.retrieval.index.build_index`.
    """
    num, dim = int(database.shape[0]), int(database.shape[1])
    if num == 0:
        raise ValueError("database is empty")
    train = _training_sample(database, train_rows) if _needs_training(dim, index) else None
    first = np.asarray(database[: min(chunk, num)])
    built = build_index(first, index, train=train, nprobe=nprobe, use_gpu=use_gpu, ef_search=ef_search)
    for start in range(first.shape[0], num, chunk):
        built.add(as_matrix("database", database[start:start + chunk], dim))
    return built


def search_hdf5(
    queries: Any,
    database: Any,
    k: int,
    index: str = "Flat",
    *,
    chunk: int = SEARCH_CHUNK_ROWS,
    train_rows: int = INDEX_TRAIN_ROWS,
    nprobe: int = 16,
    use_gpu: Optional[bool] = None,
    ef_search: int = 128,
) -> Tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest database rows of each query, reading both sets in chunks.

    Args:
        queries: (Q, D) array-like (:class:`HDF5Descriptors`, ``h5py.Dataset``, array).
        database: (N, D) array-like.
        k: neighbours per query, clipped to N.
        index: faiss factory string, as for :func:`sfrs.retrieval.index.search`.
    Returns:
        distances (Q, min(k, N)) float32 squared L2, indices (Q, min(k, N)) int64 - the
        same as :func:`sfrs.retrieval.index.search` on the loaded arrays.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if int(queries.shape[1]) != int(database.shape[1]):
        raise ValueError(f"queries have dimension {queries.shape[1]} but the database has {database.shape[1]}")
    # faiss does not widen the HNSW candidate list to k by itself (as in index.search).
    built = build_index_chunked(
        database, index, chunk=chunk, train_rows=train_rows, nprobe=nprobe, use_gpu=use_gpu,
        ef_search=max(int(ef_search), int(k)),
    )
    k = int(min(k, built.ntotal))
    num = int(queries.shape[0])
    distances = np.empty((num, k), dtype=np.float32)
    indices = np.empty((num, k), dtype=np.int64)
    for start in range(0, num, chunk):
        stop = min(start + chunk, num)
        distances[start:stop], indices[start:stop] = search_index(built, np.asarray(queries[start:stop]), k)
    return distances, indices
