"""Parameter-free global pooling: MAC (Tolias et al., ICLR 2016) and SPoC (Babenko and
Lempitsky, ICCV 2015)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sfrs.models.heads.regions import REGION_QUARTERS, check_features, quarters, region_matrix


class _ChannelPooling(nn.Module):
    """A (B, C, h, w) map pooled per channel over its locations, then L2-normalised; the
    subclass says how locations and quarters combine (:meth:`pool`, :meth:`regions`)."""

    name = ""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.out_dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C), L2-normalised rows."""
        check_features(features, self.dim, self.name)
        return F.normalize(self.pool(features), p=2, dim=-1)


class MAC(_ChannelPooling):
    """Maximum activations of convolutions (Tolias et al., ICLR 2016, eq. 1), then L2.

    y_c = max_i x_ic over the h*w locations of channel c. Regions take the maximum of
    their quarters' maxima, so region 0 equals ``forward`` exactly.

    Attributes:
        out_dim: ``dim`` (C).
    """

    name = "MAC"

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.amax(dim=(2, 3))

    def regions(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 9, C) in the order of :data:`REGION_NAMES`."""
        check_features(features, self.dim, self.name)
        maxima = torch.stack([q.amax(dim=(2, 3)) for q in quarters(features)], dim=1)  # (B, 4, C)
        pooled = torch.stack([maxima[:, list(members)].amax(dim=1) for members in REGION_QUARTERS], dim=1)
        return F.normalize(pooled, p=2, dim=-1)


class SPoC(_ChannelPooling):
    """Sum-pooled convolutional features (Babenko and Lempitsky, ICCV 2015), then L2.

    y_c = sum_i x_ic (the mean gives the same unit vector). The paper's centring prior
    (a Gaussian weight on each location) and its PCA-whitening are left out: the head is
    plain sum pooling; PCA-whitening is ``eval.pca_dim`` for every head.

    Attributes:
        out_dim: ``dim`` (C).
    """

    name = "SPoC"

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.sum(dim=(2, 3))

    def regions(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 9, C) in the order of :data:`REGION_NAMES`."""
        check_features(features, self.dim, self.name)
        sums = torch.stack([q.sum(dim=(2, 3)) for q in quarters(features)], dim=1)  # (B, 4, C)
        matrix = region_matrix(sums.device, sums.dtype)
        return F.normalize(torch.einsum("rq,bqc->brc", matrix, sums), p=2, dim=-1)
