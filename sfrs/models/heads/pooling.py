"""Parameter-free global pooling: MAC (Tolias et al., ICLR 2016) and SPoC (Babenko and
Lempitsky, ICCV 2015)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sfrs.models.heads.regions import REGION_QUARTERS, check_features, quarters, region_matrix


class MAC(nn.Module):
    """Maximum activations of convolutions (Tolias et al., ICLR 2016, eq. 1), then L2.

    y_c = max_i x_ic over the h*w locations of channel c. Regions take the maximum of
    their quarters' maxima, so region 0 equals ``forward`` exactly.

    Attributes:
        out_dim: ``dim`` (C).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.out_dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C), L2-normalised rows."""
        check_features(features, self.dim, "MAC")
        return F.normalize(features.amax(dim=(2, 3)), p=2, dim=-1)

    def regions(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 9, C) in the order of :data:`REGION_NAMES`."""
        check_features(features, self.dim, "MAC")
        maxima = torch.stack([q.amax(dim=(2, 3)) for q in quarters(features)], dim=1)  # (B, 4, C)
        pooled = torch.stack([maxima[:, list(members)].amax(dim=1) for members in REGION_QUARTERS], dim=1)
        return F.normalize(pooled, p=2, dim=-1)


class SPoC(nn.Module):
    """Sum-pooled convolutional features (Babenko and Lempitsky, ICCV 2015), then L2.

    y_c = sum_i x_ic (the mean gives the same unit vector). The paper's centring prior
    (a Gaussian weight on each location) and its PCA-whitening are left out: the head is
    plain sum pooling; PCA-whitening is ``eval.pca_dim`` for every head.

    Attributes:
        out_dim: ``dim`` (C).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.out_dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C), L2-normalised rows."""
        check_features(features, self.dim, "SPoC")
        return F.normalize(features.sum(dim=(2, 3)), p=2, dim=-1)

    def regions(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 9, C) in the order of :data:`REGION_NAMES`."""
        check_features(features, self.dim, "SPoC")
        sums = torch.stack([q.sum(dim=(2, 3)) for q in quarters(features)], dim=1)  # (B, 4, C)
        matrix = region_matrix(sums.device, sums.dtype)
        return F.normalize(torch.einsum("rq,bqc->brc", matrix, sums), p=2, dim=-1)
