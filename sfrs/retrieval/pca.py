"""PCA-whitening of global descriptors: fitting it, caching it, attaching it to a network
(Jegou & Chum, ECCV 2012; NetVLAD and SFRS reduce 32,768-d NetVLAD vectors to 4,096).

The fitted transform itself, which a saved model carries, is
:class:`sfrs.models.PCAWhitening`. Here: :func:`fit_pca_whitening` on an (N, D) array,
:func:`fit_model_pca` on a sample of a training split's descriptors, and
:func:`attach_pca`, which gives a network its whitening (reused, read from a cache keyed
by the network's weights, or fitted) for ``sfrs-eval --pca`` and ``tools/eval_all.py``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np
import scipy.linalg
import torch

from sfrs import distributed
from sfrs.data import Split
from sfrs.errors import CheckpointError, ConfigError, DataError
from sfrs.models import GeoNet, PCAWhitening
from sfrs.retrieval.extract import extract_descriptors_sharded
from sfrs.utils.checkpoint_file import load_checkpoint_file, save_checkpoint_file
from sfrs.utils.hashing import model_fingerprint as model_weights_hash


def fit_pca_whitening(descriptors: np.ndarray, dim: int, eps: float = 1e-9) -> PCAWhitening:
    """Fit PCA-whitening to ``dim`` dimensions on ``descriptors`` (N, D), in float64.

    Uses the D x D covariance when D <= N, else the N x N Gram matrix (dual form: its
    eigenvectors V give the principal directions Xc^T V / sqrt((N-1) lambda)), so memory
    is min(N, D)^2. The covariance is normalised by N - 1; each component is divided by
    sqrt(eigenvalue + eps). Component signs are fixed so that the largest-magnitude entry
    of each direction is positive (deterministic output).

    Raises:
        ValueError: ``dim`` outside [1, min(N - 1, D)] (the rank of the covariance), or
            non-finite descriptors.
    """
    x = np.array(descriptors, dtype=np.float64)  # a copy: centred in place below
    if x.ndim != 2:
        raise ValueError(f"descriptors must have shape (N, D), got {x.shape}")
    num, in_dim = x.shape
    rank = min(num - 1, in_dim)
    if not 1 <= dim <= rank:
        raise ValueError(
            f"PCA dimension {dim} is not possible with {num:,} descriptors of dimension {in_dim:,} "
            f"(at most min(N-1, D) = {max(rank, 0):,})"
        )
    if not np.isfinite(x).all():
        raise ValueError("descriptors contain NaN or infinite values")
    mean = x.mean(axis=0)
    x -= mean
    if in_dim <= num:
        matrix = x.T @ x / (num - 1)
        values, vectors = scipy.linalg.eigh(matrix, subset_by_index=[in_dim - dim, in_dim - 1])
    else:
        gram = x @ x.T / (num - 1)
        values, dual = scipy.linalg.eigh(gram, subset_by_index=[num - dim, num - 1])
        values = np.clip(values, 0.0, None)
        # C (Xc^T v) = lambda (Xc^T v) and ||Xc^T v||^2 = (N-1) lambda.
        vectors = x.T @ dual / np.sqrt((num - 1) * np.maximum(values, np.finfo(np.float64).tiny))
    order = np.argsort(values)[::-1]
    values = np.clip(values[order], 0.0, None)
    vectors = vectors[:, order]
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(dim)])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    projection = vectors / np.sqrt(values + eps)
    return PCAWhitening(torch.from_numpy(mean).float(), torch.from_numpy(projection).float())


def fit_model_pca(
    model: GeoNet,
    train_split: Split,
    dim: int,
    *,
    samples: int = 10000,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> Tuple[PCAWhitening, int]:
    """PCA-whitening to ``dim`` from up to ``samples`` training images (database and queries).

    Returns the fitted module and the number of descriptors used. The model must not carry
    a PCA already (its head output is what gets whitened).

    Raises:
        ConfigError: ``dim`` impossible for the sample (see :func:`fit_pca_whitening`).
    """
    paths = list(train_split.database_paths) + list(train_split.query_paths)
    rng = np.random.default_rng(seed)
    count = min(samples, len(paths))
    chosen = sorted(rng.choice(len(paths), size=count, replace=False).tolist())
    was_training = model.training
    model.eval()
    try:
        descriptors = extract_descriptors_sharded(
            model, [paths[i] for i in chosen], model.transform(), batch_size=batch_size,
            device=device, num_workers=num_workers, progress="PCA sample" if progress else False,
        )
    finally:
        model.train(was_training)
    try:
        pca = fit_pca_whitening(np.asarray(descriptors), dim)
    except ValueError as exc:
        raise ConfigError(f"--pca {dim}: {exc}") from None
    return pca, count


def attach_pca(
    model: GeoNet,
    dim: int,
    open_train_split: Callable[[], Split],
    *,
    cache: Optional[Union[str, Path]] = None,
    save_model_to: Optional[Union[str, Path]] = None,
    samples: int = 10000,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> str:
    """Give ``model`` PCA-whitening to ``dim``: reuse, load or fit it.

    Order: the PCA the model carries when it has ``dim`` outputs; else ``cache`` when it
    was fitted on these very network weights; else a fit on up to ``samples`` descriptors
    of the split ``open_train_split()`` returns (called only then: opening a training
    split can be slow, and its absence is an error only then), written to ``cache``.
    A whitening the model did not carry yet is saved with it to ``save_model_to``
    (main process only), so that the next run reuses it.

    Returns:
        One human line saying which of the three happened (and where the model went).
    Raises:
        DataError: the training split cannot be opened. ConfigError: impossible ``dim``.
    """
    if dim < 1:
        raise ConfigError(f"--pca {dim}: the dimension must be positive")
    if model.pca is not None and model.out_dim == dim:
        return f"PCA-whitening to {dim}-d already stored with the model: reused"
    model.set_pca(None)  # a PCA of another dimension: whiten the head's output afresh
    base = model_weights_hash(model)
    cached = _read_pca_cache(cache, base, dim)
    if cached is not None:
        model.set_pca(PCAWhitening(cached["mean"], cached["projection"]).to(device))
        message = f"PCA-whitening {model.head_dim} -> {dim} loaded from {cache} (fitted on these weights)"
    else:
        try:
            train_split = open_train_split()
        except DataError as exc:
            raise DataError(f"--pca needs the training split of the dataset to fit on: {exc}") from None
        pca, used = fit_model_pca(
            model, train_split, dim, samples=samples, seed=seed, device=device,
            batch_size=batch_size, num_workers=num_workers, progress=progress,
        )
        model.set_pca(pca.to(device))
        if cache is not None and distributed.is_main():
            _write_pca_cache(cache, base, dim, pca)
        message = (
            f"PCA-whitening {model.head_dim} -> {dim} fitted on {used:,} descriptors of "
            f"{train_split.dataset} [{train_split.split}]"
        )
    if save_model_to is None:
        return message
    if distributed.is_main():
        model.save(save_model_to)
    return f"{message}; model saved to {save_model_to}"


def _write_pca_cache(cache: Union[str, Path], weights: str, dim: int, pca: PCAWhitening) -> None:
    """``{"weights": hash of the network it whitens, "dim": dim, "pca": {"mean", "projection"}}``."""
    state = {k: v.cpu() for k, v in pca.state_dict().items()}
    save_checkpoint_file({"weights": weights, "dim": dim, "pca": state}, cache)


def _read_pca_cache(cache: Optional[Union[str, Path]], weights: str, dim: int) -> Optional[Dict[str, torch.Tensor]]:
    """The cached PCA state when ``cache`` was fitted on ``weights`` to ``dim``; None otherwise."""
    if cache is None or not Path(cache).is_file():
        return None
    try:
        payload = load_checkpoint_file(cache)
    except CheckpointError:  # an unreadable cache is refitted, never trusted
        return None
    if not isinstance(payload, dict) or payload.get("weights") != weights or payload.get("dim") != dim:
        return None
    return payload.get("pca")
