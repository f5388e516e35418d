"""k-nearest-neighbour search over global descriptors with faiss (Johnson et al., 2019).

One function for evaluation and mining: ``search(queries, database, k, index="Flat")``,
the index described by a faiss factory string ("Flat", "IVF1024,Flat", "HNSW32",
"IVF1024,PQ64", "PCAW512,Flat"...) passed through unchanged. Distances are squared L2;
for L2-normalised descriptors the order equals that of the inner product.
"""
from __future__ import annotations

import re
from typing import Any, Optional, Tuple

import faiss
import numpy as np

QUERY_BATCH = 4096
_FINITE_CHECK_ROWS = 16384


def as_matrix(name: str, array: Any, dim: Optional[int] = None) -> np.ndarray:
    """C-contiguous float32 (rows, D) view/copy of ``array``, validated."""
    if hasattr(array, "detach"):  # a torch tensor: faiss needs host memory
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (rows, D), got shape {array.shape}")
    if array.dtype.kind != "f":
        raise ValueError(f"{name} must hold floating-point descriptors, got dtype {array.dtype}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{name} has dimension {array.shape[1]} but the database has {dim}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    # Chunked so that the check never allocates a boolean copy of a large database.
    for start in range(0, array.shape[0], _FINITE_CHECK_ROWS):
        if not np.isfinite(array[start:start + _FINITE_CHECK_ROWS]).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _faiss_message(exc: BaseException) -> str:
    """The informative part of a faiss C++ exception ("Error in <signature> at <file>:<line>: ...")."""
    text = " ".join(str(exc).split())
    text = re.sub(r"^Error in .*? at \S+:\d+: (Error: )?", "", text)
    return text or type(exc).__name__


def _want_gpu(use_gpu: Optional[bool]) -> bool:
    num_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu is None:
        return num_gpus > 0
    if use_gpu and num_gpus == 0:
        raise ValueError("use_gpu=True but faiss sees no GPU (install faiss-gpu and check CUDA)")
    return bool(use_gpu)


def build_index(
    database: np.ndarray,
    index: str = "Flat",
    train: Optional[np.ndarray] = None,
    nprobe: int = 16,
    use_gpu: Optional[bool] = None,
    ef_search: int = 128,
) -> "faiss.Index":
    """A faiss index over ``database`` (N, D), built from the factory string ``index``.

    Args:
        database: (N, D) float descriptors (converted to float32).
        index: faiss factory string, passed to ``faiss.index_factory(D, index)`` unchanged.
        train: (M, D) training vectors for indexes that need training (IVF, PQ, PCA);
            default the database itself.
        nprobe: inverted lists visited per query by IVF indexes (clipped to the list count).
        ef_search: candidate list size of HNSW searches (:func:`search` raises it to k);
            faiss' default of 16 loses a third of the true top-10 on hard data.
        use_gpu: None = on a GPU when faiss sees one; GPU-unsupported index types then stay
            on the CPU. True requires a GPU.
    Returns:
        The trained index holding the N database vectors (L2 metric).
    """
    return _build(as_matrix("database", database), index, train, nprobe, use_gpu, ef_search)


def _build(
    database: np.ndarray,
    index: str,
    train: Optional[np.ndarray],
    nprobe: int,
    use_gpu: Optional[bool],
    ef_search: int,
) -> "faiss.Index":
    num, dim = database.shape
    if num == 0:
        raise ValueError("database is empty")
    try:
        cpu_index = faiss.index_factory(dim, index, faiss.METRIC_L2)
    except RuntimeError as exc:
        raise ValueError(f"faiss index '{index}' cannot be built for D={dim}: {_faiss_message(exc)}") from None

    built = cpu_index
    if _want_gpu(use_gpu):
        try:
            built = faiss.index_cpu_to_all_gpus(cpu_index)
        except (RuntimeError, AttributeError) as exc:
            if use_gpu:
                raise ValueError(f"faiss index '{index}' cannot run on the GPU: {_faiss_message(exc)}") from None
            built = cpu_index  # e.g. HNSW has no GPU implementation: stay on the CPU

    if not built.is_trained:
        vectors = database if train is None else as_matrix("train", train, dim)
        try:
            built.train(vectors)
        except RuntimeError as exc:
            raise ValueError(
                f"faiss index '{index}' could not be trained on {vectors.shape[0]:,} vectors: {_faiss_message(exc)}"
            ) from None
    built.add(database)

    ivf = faiss.try_extract_index_ivf(cpu_index) if built is cpu_index else None
    if ivf is not None:
        ivf.nprobe = int(max(1, min(nprobe, ivf.nlist)))
    elif built is not cpu_index:
        try:  # GPU IVF indexes take nprobe through the parameter space
            faiss.GpuParameterSpace().set_index_parameter(built, "nprobe", int(nprobe))
        except (RuntimeError, AttributeError):
            pass  # not an IVF index
    if built is cpu_index:
        try:  # through ParameterSpace so that wrapped HNSW indexes (e.g. "PCA64,HNSW32") are reached
            faiss.ParameterSpace().set_index_parameter(built, "efSearch", int(ef_search))
        except RuntimeError:
            pass  # not an HNSW index
    return built


def search(
    queries: np.ndarray,
    database: np.ndarray,
    k: int,
    index: str = "Flat",
    train: Optional[np.ndarray] = None,
    nprobe: int = 16,
    use_gpu: Optional[bool] = None,
    ef_search: int = 128,
) -> Tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest database rows of each query (squared L2).

    Args:
        queries: (Q, D) float descriptors.
        database: (N, D) float descriptors.
        k: neighbours per query; clipped to N (no padding columns).
        index, train, nprobe, use_gpu, ef_search: see :func:`build_index`.
    Returns:
        distances: (Q, min(k, N)) float32 squared L2 distances, ascending per row.
        indices: (Q, min(k, N)) int64 database rows. Approximate indexes (IVF with a small
        ``nprobe``) may return -1 where fewer than k candidates were visited.

    Queries are searched in batches of :data:`QUERY_BATCH`; faiss itself blocks the
    database, so no Q x N matrix is ever held.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    database = as_matrix("database", database)
    queries = as_matrix("queries", queries, database.shape[1])
    # faiss does not widen the HNSW candidate list to k by itself: rows would end in -1.
    built = _build(database, index, train, nprobe, use_gpu, max(int(ef_search), int(k)))
    return _search(built, queries, int(k))


def search_index(built: "faiss.Index", queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Search an index from :func:`build_index`; same outputs as :func:`search`.

    For HNSW indexes, k must not exceed the ``ef_search`` the index was built with.
    """
    return _search(built, as_matrix("queries", queries, built.d), k)


def _search(built: "faiss.Index", queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    k = int(min(k, built.ntotal))
    if k < 1:
        raise ValueError("k must be positive and the index non-empty")
    num = queries.shape[0]
    distances = np.empty((num, k), dtype=np.float32)
    indices = np.empty((num, k), dtype=np.int64)
    for start in range(0, num, QUERY_BATCH):
        stop = min(start + QUERY_BATCH, num)
        dist, idx = built.search(queries[start:stop], k)
        distances[start:stop] = dist
        indices[start:stop] = idx
    return distances, indices
