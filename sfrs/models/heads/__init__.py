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
(Tolias et al., ICLR 2016), ``spoc`` (Babenko and Lempitsky, ICCV 2015), ``rmac``
(regional MAC, Tolias et al., ICLR 2016), ``crn`` (contextual reweighting of NetVLAD,
Kim et al., CVPR 2017), ``mixvpr`` (Ali-bey et al., WACV 2023), ``salad`` (optimal
transport aggregation, Izquierdo and Civera, CVPR 2024) and ``cls`` (a vision
transformer's class token).

Class tokens: a head may declare ``class_token = "optional"`` (``salad``) or
``"required"`` (``cls``); its signatures are then ``forward(features, class_token=None)``
and ``regions(features, class_token=None)`` with ``class_token`` of shape (B, C). Heads
without the attribute take the feature map only.
"""
from sfrs.models.heads.cls import ClassTokenHead
from sfrs.models.heads.crn import CRN, ContextMask
from sfrs.models.heads.gem import GeM
from sfrs.models.heads.mixvpr import FeatureMixer, MixVPR
from sfrs.models.heads.netvlad import NetVLAD, netvlad_alpha
from sfrs.models.heads.pooling import MAC, SPoC
from sfrs.models.heads.regions import REGION_NAMES
from sfrs.models.heads.registry import build_head, list_heads
from sfrs.models.heads.rmac import RMAC, rmac_grid
from sfrs.models.heads.salad import SALAD, log_sinkhorn, transport_marginals

__all__ = [
    "NetVLAD", "GeM", "MAC", "SPoC", "RMAC", "CRN", "MixVPR", "SALAD", "ClassTokenHead", "REGION_NAMES",
    "build_head", "list_heads", "netvlad_alpha", "rmac_grid", "ContextMask", "FeatureMixer", "log_sinkhorn",
    "transport_marginals",
]
