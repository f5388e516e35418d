"""MixVPR (Ali-bey, Chaib-draa and Giguere, "MixVPR: Feature Mixing for Visual Place
Recognition", WACV 2023)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sfrs.errors import ConfigError
from sfrs.models.heads.regions import check_features, crops


class FeatureMixer(nn.Module):
    """One Feature-Mixer block over the flattened spatial dimension (MixVPR, eq. 2):
    X <- X + W2 ReLU(W1 LayerNorm(X)), rows of X (B, C, n) mixed along n."""

    def __init__(self, size: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = max(1, int(size * mlp_ratio))
        self.norm = nn.LayerNorm(size)
        self.expand = nn.Linear(size, hidden)
        self.reduce = nn.Linear(hidden, size)
        for linear in (self.expand, self.reduce):
            nn.init.trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.reduce(F.relu(self.expand(self.norm(x))))


class MixVPR(nn.Module):
    """MixVPR (Ali-bey et al., WACV 2023): feature maps mixed by MLPs, then projected.

    The map (B, C, h, w) is average-pooled adaptively to a fixed ``grid`` (gh, gw), since
    the mixers' linear layers act on the n = gh * gw flattened locations and so fix n at
    construction (a map smaller than the grid is spread over it, a larger one averaged
    into it; choose ``grid`` = the backbone's map at the input size, e.g. 20x20 for
    ResNet-50 conv4 at 320x320 as in the paper). Then ``depth`` Feature-Mixer blocks
    (:class:`FeatureMixer`), a channel projection C -> ``out_channels`` and a row
    projection n -> ``out_rows`` (both linear), flattened channel-major to
    ``out_channels * out_rows`` and L2-normalised.

    Regions: the whole head (pooling to the same grid included) on each of the 9 SFRS
    crops of the map; region 0 is ``forward``.

    Attributes:
        out_dim: ``out_channels * out_rows``.
    """

    def __init__(
        self,
        dim: int,
        grid: Sequence[int] = (20, 20),
        depth: int = 4,
        mlp_ratio: float = 1.0,
        out_channels: int = 512,
        out_rows: int = 4,
    ) -> None:
        super().__init__()
        grid = tuple(grid)
        if len(grid) != 2 or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in grid):
            raise ConfigError(f"MixVPR option 'grid' must be two integers >= 1 [height, width], got {list(grid)}")
        if depth < 0:
            raise ConfigError(f"MixVPR option 'depth' must be >= 0, got {depth}")
        if out_channels < 1 or out_rows < 1:
            raise ConfigError(
                f"MixVPR options 'out_channels' and 'out_rows' must be >= 1, got {out_channels} and {out_rows}"
            )
        if not mlp_ratio > 0:
            raise ConfigError(f"MixVPR option 'mlp_ratio' must be > 0, got {mlp_ratio}")
        self.dim = dim
        self.grid = grid
        size = grid[0] * grid[1]
        self.mixers = nn.Sequential(*(FeatureMixer(size, mlp_ratio) for _ in range(depth)))
        self.channel_proj = nn.Linear(dim, out_channels)
        self.row_proj = nn.Linear(size, out_rows)
        self.out_dim = out_channels * out_rows

    def extra_repr(self) -> str:
        return f"dim={self.dim}, grid={list(self.grid)}, out_dim={self.out_dim}"

    def _describe(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, out_dim), L2-normalised."""
        x = F.adaptive_avg_pool2d(features, self.grid).flatten(2)  # (B, C, n)
        x = self.mixers(x)
        x = self.channel_proj(x.transpose(1, 2)).transpose(1, 2)  # (B, out_channels, n)
        x = self.row_proj(x)  # (B, out_channels, out_rows)
        return F.normalize(x.flatten(1), p=2, dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, out_channels * out_rows), L2-normalised rows."""
        check_features(features, self.dim, "MixVPR")
        return self._describe(features)

    def regions(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 9, out_dim) in the order of :data:`REGION_NAMES`."""
        check_features(features, self.dim, "MixVPR")
        return torch.stack([self._describe(crop) for crop in crops(features)], dim=1)
