"""The class token of a vision transformer (ViT, Dosovitskiy et al., ICLR 2021) as the
global descriptor."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from sfrs.errors import ConfigError
from sfrs.models.heads.regions import check_features, crops


class ClassTokenHead(nn.Module):
    """Global descriptor = L2(W t + b) of the backbone's class token t (B, C), or L2(t)
    without ``fc_dim``.

    ``class_token = "required"``: ``forward(features, class_token)`` and
    ``regions(features, class_token)`` need the token; a backbone without one is a
    :class:`ConfigError`.

    Regions, the documented exception to "each region is the head on its crop": a class
    token describes the whole image and has no crop, so region 0 is the global
    descriptor above, and regions 1-8 are L2(W mean_i p_i + b) of the patch tokens p_i
    (the feature map's locations) inside each crop, projected by the same layer.

    Attributes:
        fc: ``nn.Linear(dim, fc_dim)`` or None.
        out_dim: ``fc_dim`` or ``dim``.
    """

    class_token = "required"

    def __init__(self, dim: int, fc_dim: Optional[int] = None) -> None:
        super().__init__()
        if fc_dim is not None and fc_dim < 1:
            raise ConfigError(f"cls head option 'fc_dim' must be >= 1 or null, got {fc_dim}")
        self.dim = dim
        self.fc = nn.Linear(dim, fc_dim) if fc_dim is not None else None
        self.out_dim = fc_dim if fc_dim is not None else dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}, out_dim={self.out_dim}"

    def _check(self, features: torch.Tensor, class_token: Optional[torch.Tensor]) -> torch.Tensor:
        if class_token is None:
            raise ConfigError(
                "head 'cls' needs the backbone's class token; use a backbone with a class token "
                "(a vision transformer) or another head"
            )
        check_features(features, self.dim, "cls head")
        if tuple(class_token.shape) != (features.shape[0], self.dim):
            raise ValueError(
                f"cls head expects a class token of shape ({features.shape[0]}, {self.dim}), "
                f"got {tuple(class_token.shape)}"
            )
        return class_token

    def _project(self, vectors: torch.Tensor) -> torch.Tensor:
        if self.fc is not None:
            vectors = self.fc(vectors)
        return F.normalize(vectors, p=2, dim=-1)

    def forward(self, features: torch.Tensor, class_token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C, h, w) and class token (B, C) -> (B, out_dim), L2-normalised rows."""
        return self._project(self._check(features, class_token))

    def regions(self, features: torch.Tensor, class_token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C, h, w) and class token (B, C) -> (B, 9, out_dim) in the order of
        :data:`REGION_NAMES`: the class token's descriptor, then the 8 crops' mean patch tokens."""
        token = self._check(features, class_token)
        means = [crop.mean(dim=(2, 3)) for crop in crops(features)[1:]]
        return self._project(torch.stack([token] + means, dim=1))
