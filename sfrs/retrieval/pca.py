"""PCA-whitening of global descriptors (Jegou & Chum, ECCV 2012; used by NetVLAD and SFRS
to reduce 32,768-d NetVLAD vectors to 4,096 dimensions)."""
from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PCAWhitening(nn.Module):
    """``x (B, D) -> normalize((x - mean) @ projection) (B, dim)``.

    Buffers (saved in ``state_dict``): ``mean`` (D,) and ``projection`` (D, dim), whose
    columns are the principal directions divided by sqrt(eigenvalue).
    """

    def __init__(self, mean: Tensor, projection: Tensor) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32)
        projection = torch.as_tensor(projection, dtype=torch.float32)
        if mean.ndim != 1 or projection.ndim != 2 or projection.shape[0] != mean.shape[0]:
            raise ValueError(
                f"PCAWhitening needs mean (D,) and projection (D, dim), got {tuple(mean.shape)} "
                f"and {tuple(projection.shape)}"
            )
        self.register_buffer("mean", mean.clone())
        self.register_buffer("projection", projection.clone())

    @classmethod
    def empty(cls, in_dim: int, out_dim: int) -> "PCAWhitening":
        """Zero buffers of the right shapes, to ``load_state_dict`` into."""
        return cls(torch.zeros(in_dim), torch.zeros(in_dim, out_dim))

    @property
    def in_dim(self) -> int:
        return int(self.projection.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.projection.shape[1])

    def project(self, x: Tensor) -> Tensor:
        """Whitened (B, dim) before L2 normalisation (identity covariance on the fit data)."""
        return (x.to(self.projection.dtype) - self.mean) @ self.projection

    def forward(self, x: Tensor) -> Tensor:
        """(B, D) -> L2-normalised (B, dim)."""
        return F.normalize(self.project(x), p=2, dim=1)

    def extra_repr(self) -> str:
        return f"{self.in_dim} -> {self.out_dim}"


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
