"""Contextual Reweighting Network (Kim, Dunn and Frahm, "Learned Contextual Feature
Reweighting for Image Geo-Localization", CVPR 2017) on top of NetVLAD."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from sfrs.models.heads.netvlad import NetVLAD

#: (kernel size, output channels) of the multi-scale context filters (the authors' model).
CONTEXT_FILTERS: Tuple[Tuple[int, int], ...] = ((3, 32), (5, 32), (7, 20))


class ContextMask(nn.Module):
    """The reweighting mask m (B, 1, h, w) of a feature map (B, C, h, w).

    The map is average-pooled (3x3 window, stride 2, output size rounded up as Caffe
    does), filtered by 3x3, 5x5 and 7x7 convolutions (32, 32 and 20 channels, each
    followed by ReLU, padded to keep the pooled size), the 84 responses are summed with
    fixed unit weights plus a learnt bias and passed through ReLU, then upsampled
    bilinearly to (h, w). The fixed unit accumulation weights and the ReLU on the mask
    follow the authors' released model (its 1x1 accumulation layer does not learn its
    weights); bilinear interpolation to exactly (h, w) replaces their fixed x2
    deconvolution so that any map size works.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.filters = nn.ModuleList(
            nn.Conv2d(dim, channels, kernel_size=size, padding=size // 2) for size, channels in CONTEXT_FILTERS
        )
        for conv in self.filters:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 1, h, w), non-negative."""
        h, w = features.shape[-2:]
        pooled = F.avg_pool2d(features, kernel_size=3, stride=2, ceil_mode=True)
        context = torch.cat([F.relu(conv(pooled)) for conv in self.filters], dim=1)
        mask = F.relu(context.sum(dim=1, keepdim=True) + self.bias)
        return F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False)


class CRN(NetVLAD):
    """NetVLAD whose residual sums are reweighted by a learnt context mask (CRN, Kim et
    al., CVPR 2017, eq. 3): V[k] = sum_i m_i a_ik (x_i - c_k), with m_i from
    :class:`ContextMask` computed on the head's input map (before NetVLAD's per-location
    L2 normalisation, as in the authors' model); intra-normalisation, flattening and L2
    are NetVLAD's.

    It is a :class:`NetVLAD` (same ``clusters``/``normalize_input`` options, the same
    k-means ``init_from_descriptors``); only the soft assignment is multiplied by the
    mask. Regions: the mask is computed once on the whole map (the context of a
    location does not depend on the crop) and the weighted per-quarter sums are combined
    as NetVLAD does, so region 0 equals ``forward``.

    Attributes:
        context: the :class:`ContextMask`.
        out_dim: K * D.
    """

    def __init__(self, clusters: int = 64, dim: int = 512, normalize_input: bool = True) -> None:
        super().__init__(clusters=clusters, dim=dim, normalize_input=normalize_input)
        self.context = ContextMask(dim)

    def _local(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Normalised descriptors (B, D, h, w) and mask-weighted soft assignment (B, K, h, w)."""
        x, soft_assign = super()._local(features)
        return x, soft_assign * self.context(features)
