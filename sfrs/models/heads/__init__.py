"""Aggregation heads: local feature maps (B, C, h, w) -> global descriptors (B, D).

Every head built by :func:`build_head` has the same contract:

- ``forward(features)``: (B, C, h, w) -> (B, ``out_dim``), rows L2-normalised;
- ``regions(features)``: (B, C, h, w) -> (B, 9, ``out_dim``), the descriptors of the
  9 regions of SFRS (Ge et al., ECCV 2020) in the order
  ``[global, top, bottom, left, right, TL, TR, BL, BR]``, each row L2-normalised.
  Regions are cut on the *feature map*: rows ``[:h//2]`` / ``[h//2:]`` and columns
  ``[:w//2]`` / ``[w//2:]`` (h >= 2 and w >= 2 required). Where the pooling allows it,
  per-quarter statistics are computed once and the halves and the global region are
  combined from quarters, so region 0 equals ``forward`` (up to floating-point
  summation order).

Heads (:mod:`~sfrs.models.heads.registry` lists them): ``netvlad`` (Arandjelovic et al.,
CVPR 2016), ``gem`` (generalised-mean pooling, Radenovic et al., TPAMI 2019), ``mac``
(Tolias et al., ICLR 2016), ``spoc`` (Babenko and Lempitsky, ICCV 2015) and ``rmac``
(regional MAC, Tolias et al., ICLR 2016).
"""
from sfrs.models.heads.gem import GeM
from sfrs.models.heads.netvlad import NetVLAD, netvlad_alpha
from sfrs.models.heads.pooling import MAC, SPoC
from sfrs.models.heads.regions import REGION_NAMES
from sfrs.models.heads.registry import build_head, list_heads
from sfrs.models.heads.rmac import RMAC, rmac_grid

__all__ = [
    "NetVLAD", "GeM", "MAC", "SPoC", "RMAC", "REGION_NAMES", "build_head", "list_heads",
    "netvlad_alpha", "rmac_grid",
]
