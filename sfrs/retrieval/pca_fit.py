"""Fit a model's PCA-whitening on a random sample of training-split descriptors."""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import torch

from sfrs.data.geo import Split
from sfrs.errors import ConfigError
from sfrs.retrieval.extract import extract_descriptors_sharded
from sfrs.retrieval.pca import PCAWhitening, fit_pca_whitening


def fit_model_pca(
    model: torch.nn.Module,
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
