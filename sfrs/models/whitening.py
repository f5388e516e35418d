"""PCA-whitening applied to global descriptors, part of a saved model (Jegou & Chum,
ECCV 2012; NetVLAD and SFRS reduce 32,768-d NetVLAD vectors to 4,096 dimensions).

Only the fitted transform lives here; fitting it on training descriptors, caching and
attaching it to a network is :mod:`sfrs.retrieval.pca`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PCAWhitening(nn.Module):
    """``x (B, D) -> normalize((x - mean) @ projection) (B, dim)``.

    Buffers (saved in ``state_dict`` and in a model file's ``pca`` entry): ``mean`` (D,)
    and ``projection`` (D, dim), whose columns are the principal directions divided by
    sqrt(eigenvalue).
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
