"""The 9 regions of SFRS (Ge et al., ECCV 2020), cut on the feature map.

Order ``[global, top, bottom, left, right, TL, TR, BL, BR]``; rows ``[:h//2]`` /
``[h//2:]``, columns ``[:w//2]`` / ``[w//2:]`` (h >= 2 and w >= 2 required).
"""
from __future__ import annotations

from typing import List, Tuple

import torch

# Region order: indices into the 4 quarters [TL, TR, BL, BR] summed for each region.
REGION_NAMES: Tuple[str, ...] = ("global", "top", "bottom", "left", "right", "TL", "TR", "BL", "BR")
REGION_QUARTERS: Tuple[Tuple[int, ...], ...] = (
    (0, 1, 2, 3), (0, 1), (2, 3), (0, 2), (1, 3), (0,), (1,), (2,), (3,),
)


def region_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(9, 4) 0/1 matrix M with region r = sum_q M[r, q] * quarter q."""
    matrix = torch.zeros(len(REGION_QUARTERS), 4, device=device, dtype=dtype)
    for r, members in enumerate(REGION_QUARTERS):
        matrix[r, list(members)] = 1
    return matrix


def quarters(features: torch.Tensor) -> List[torch.Tensor]:
    """Split (B, C, h, w) into its 4 quarters [TL, TR, BL, BR] at row h//2, column w//2."""
    h, w = features.shape[-2:]
    if h < 2 or w < 2:
        raise ValueError(
            f"regions need a feature map of at least 2x2 locations, got {h}x{w}; "
            "use larger input images"
        )
    top, left = h // 2, w // 2
    return [
        features[..., :top, :left], features[..., :top, left:],
        features[..., top:, :left], features[..., top:, left:],
    ]


def check_features(features: torch.Tensor, dim: int, head: str) -> None:
    if features.dim() != 4 or features.shape[1] != dim:
        raise ValueError(
            f"{head} expects features of shape (B, {dim}, h, w), got {tuple(features.shape)}"
        )


def crops(features: torch.Tensor) -> List[torch.Tensor]:
    """The 9 regions of (B, C, h, w) as views, in the order of :data:`REGION_NAMES`.

    For heads whose pooling does not decompose into per-quarter statistics (R-MAC)."""
    quarters(features)  # same size check as the other heads
    h, w = features.shape[-2:]
    top, left = h // 2, w // 2
    return [
        features,
        features[..., :top, :], features[..., top:, :],
        features[..., :, :left], features[..., :, left:],
        features[..., :top, :left], features[..., :top, left:],
        features[..., top:, :left], features[..., top:, left:],
    ]
