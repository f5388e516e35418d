"""PCA-whitening applied to global descriptors, part of a saved model (Jegou & Chum,
ECCV 2012; NetVLAD and SFRS reduce 32,768-d NetVLAD vectors to 4,096 dimensions).

Only the fitted transform lives here; fitting it on training descriptors, caching and
attaching it to a network is :mod:`sfrs.retrieval.pca`.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PCAWhitening(nn.Module):
    """``x (B, D) -> normalize((x - mean) @ projection [+ bias]) (B, dim)``.

    Buffers (saved in ``state_dict`` and in a model file's ``pca`` entry): ``mean`` (D,)
    and ``projection`` (D, dim), whose columns are the principal directions divided by
    sqrt(eigenvalue); optionally ``bias`` (dim,). A whitening stored as a layer
    ``y = W v + b`` (the SFRS authors' released model folds its PCA into a 1x1
    convolution) is ``mean = 0``, ``projection = W^T``, ``bias = b``: recovering a mean
    from ``b`` would mean solving an under-determined system.
    """

    def __init__(self, mean: Tensor, projection: Tensor, bias: Optional[Tensor] = None) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32)
        projection = torch.as_tensor(projection, dtype=torch.float32)
        if mean.ndim != 1 or projection.ndim != 2 or projection.shape[0] != mean.shape[0]:
            raise ValueError(
                f"PCAWhitening needs mean (D,) and projection (D, dim), got {tuple(mean.shape)} "
                f"and {tuple(projection.shape)}"
            )
        if bias is not None:
            bias = torch.as_tensor(bias, dtype=torch.float32)
            if bias.shape != projection.shape[1:]:
                raise ValueError(f"PCAWhitening bias must have shape ({projection.shape[1]},), got {tuple(bias.shape)}")
            bias = bias.clone()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("projection", projection.clone())
        # absent from state_dict when None: files of whitenings without one stay as they were
        self.register_buffer("bias", bias)

    @classmethod
    def from_state(cls, state: Mapping[str, Tensor]) -> "PCAWhitening":
        """The whitening of a ``state_dict`` (a model file's ``pca`` entry)."""
        return cls(state["mean"], state["projection"], state.get("bias"))

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
        projected = (x.to(self.projection.dtype) - self.mean) @ self.projection
        return projected if self.bias is None else projected + self.bias

    def forward(self, x: Tensor) -> Tensor:
        """(B, D) -> L2-normalised (B, dim)."""
        return F.normalize(self.project(x), p=2, dim=1)

    def extra_repr(self) -> str:
        return f"{self.in_dim} -> {self.out_dim}" + (", bias" if self.bias is not None else "")
