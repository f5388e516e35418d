"""Generalised-mean pooling (Radenovic et al., TPAMI 2019)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from sfrs.models.heads.regions import check_features, quarters, region_matrix


class GeM(nn.Module):
    """Generalised-mean pooling (Radenovic et al., TPAMI 2019) with optional FC, then L2.

    y_c = (mean_i clamp(x_ic, eps)^p)^(1/p) with learnable p; then ``fc`` (C -> fc_dim)
    if ``fc_dim`` is given; then L2 normalisation.

    Attributes:
        p: parameter of shape (1,).
        fc: ``nn.Linear(dim, fc_dim)`` or None.
        out_dim: ``fc_dim`` or ``dim``.
    """

    def __init__(self, dim: int, p: float = 3.0, eps: float = 1e-6, fc_dim: Optional[int] = None) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.p = nn.Parameter(torch.full((1,), float(p)))
        self.fc = nn.Linear(dim, fc_dim) if fc_dim is not None else None
        self.out_dim = fc_dim if fc_dim is not None else dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}, p={self.p.item():.4g}, eps={self.eps}"

    def _powered(self, features: torch.Tensor) -> torch.Tensor:
        check_features(features, self.dim, "GeM")
        return features.clamp(min=self.eps).pow(self.p)

    def _finish(self, means: torch.Tensor) -> torch.Tensor:
        pooled = means.pow(1.0 / self.p)
        if self.fc is not None:
            pooled = self.fc(pooled)
        return F.normalize(pooled, p=2, dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, out_dim), L2-normalised rows."""
        return self._finish(self._powered(features).mean(dim=(2, 3)))

    def regions(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 9, out_dim) in the order of :data:`REGION_NAMES`."""
        parts = quarters(self._powered(features))
        sums = torch.stack([q.sum(dim=(2, 3)) for q in parts], dim=1)  # (B, 4, C)
        counts = torch.tensor(
            [q.shape[-2] * q.shape[-1] for q in parts], device=sums.device, dtype=sums.dtype
        )
        matrix = region_matrix(sums.device, sums.dtype)
        means = torch.einsum("rq,bqc->brc", matrix, sums) / (matrix @ counts)[None, :, None]
        return self._finish(means)
