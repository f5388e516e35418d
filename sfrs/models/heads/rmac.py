"""Regional MAC (Tolias, Sicre and Jegou, "Particular object retrieval with integral
max-pooling of CNN activations", ICLR 2016, section 3)."""
from __future__ import annotations

import functools
import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from sfrs.errors import ConfigError
from sfrs.models.heads.regions import check_features, crops

#: overlap of neighbouring regions aimed at, and the region counts tried along the long side.
OVERLAP = 0.4
LONG_SIDE_STEPS = (2, 3, 4, 5, 6, 7)


@functools.lru_cache(maxsize=256)
def rmac_grid(h: int, w: int, levels: int) -> Tuple[Tuple[int, int, int], ...]:
    """Square regions ``(top, left, side)`` of an h x w map, 0-based, scale by scale.

    The rule of the authors' ``rmac_regions.m`` (also ``rmac`` in cnnimageretrieval-pytorch):
    with s = min(h, w), the number of extra regions along the long side is the n - 1 for
    n in 2..7 minimising | (s - b) / s - 0.4 |, b = (max(h, w) - s) / (n - 1) (0 extra
    when h == w). At scale l = 1..L the side is s_l = floor(2 s / (l + 1)); along an axis
    of length N with m = l (+ the extra count on the long side) regions, the starts are
    floor(c + k (N - s_l) / (m - 1)) - c for k = 0..m-1, c = floor(s_l / 2 - 1) (start 0
    if m = 1). Regions of side 0 are dropped.
    """
    short = min(h, w)
    extra_h = extra_w = 0
    if h != w:
        gaps = [abs((short - (max(h, w) - short) / (n - 1)) / short - OVERLAP) for n in LONG_SIDE_STEPS]
        extra = gaps.index(min(gaps)) + 1
        if h < w:
            extra_w = extra
        else:
            extra_h = extra
    grid = []
    for level in range(1, levels + 1):
        side = math.floor(2 * short / (level + 1))
        if side == 0:
            continue
        half = math.floor(side / 2 - 1)
        tops = _starts(h, side, level + extra_h, half)
        lefts = _starts(w, side, level + extra_w, half)
        grid.extend((top, left, side) for top in tops for left in lefts)
    return tuple(grid)


def _starts(length: int, side: int, count: int, half: int) -> List[int]:
    step = (length - side) / (count - 1) if count > 1 else 0.0
    return [math.floor(half + k * step) - half for k in range(count)]


class RMAC(nn.Module):
    """R-MAC: MAC of each region of :func:`rmac_grid`, each L2-normalised, summed, then L2.

    The paper PCA-whitens every regional vector before the sum (whitening learnt on another
    data set); that step is left out here: regional vectors are summed as they are
    (``eval.pca_dim`` whitens the final descriptor for every head). ``regions()`` runs the
    whole head, grid included, on each of the 9 SFRS crops of the feature map.

    Attributes:
        levels: L, the number of scales.
        out_dim: ``dim`` (C).
    """

    def __init__(self, dim: int, levels: int = 3) -> None:
        super().__init__()
        if levels < 1:
            raise ConfigError(f"R-MAC needs levels >= 1, got {levels}")
        self.dim = dim
        self.levels = levels
        self.out_dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}, levels={self.levels}"

    def _pool(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C), L2-normalised."""
        h, w = features.shape[-2:]
        grid = rmac_grid(h, w, self.levels)
        regional = torch.stack(
            [features[..., t:t + s, l:l + s].amax(dim=(2, 3)) for t, l, s in grid], dim=1
        )  # (B, R, C)
        return F.normalize(F.normalize(regional, p=2, dim=-1).sum(dim=1), p=2, dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C), L2-normalised rows."""
        check_features(features, self.dim, "R-MAC")
        return self._pool(features)

    def regions(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 9, C) in the order of :data:`REGION_NAMES`."""
        check_features(features, self.dim, "R-MAC")
        return torch.stack([self._pool(crop) for crop in crops(features)], dim=1)
