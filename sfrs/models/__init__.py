"""Networks for place recognition: backbone (B,3,H,W) -> (B,C,h,w), head -> (B,D)
L2-normalised, optional PCA-whitening and label-free adapter, saved with the description
that rebuilds them; the SFRS authors' released models converted to that form.

Import model names from here (``from sfrs.models import build_network, load_network``).
"""
from sfrs.models.adapter import Adapter
from sfrs.models.backbones import IMAGENET_MEAN, IMAGENET_STD, Backbone, build_backbone, list_backbones
from sfrs.models.heads import (
    CRN, MAC, REGION_NAMES, RMAC, SALAD, ClassTokenHead, GeM, MixVPR, NetVLAD, SPoC, build_head, list_heads,
)
from sfrs.models.init import init_netvlad, sample_local_descriptors
from sfrs.models.network import GeoNet, build_network, load_network, network_from_payload
from sfrs.models.openibl import convert_openibl
from sfrs.models.whitening import PCAWhitening

__all__ = [
    "GeoNet",
    "build_network",
    "load_network",
    "network_from_payload",
    "convert_openibl",
    "Backbone",
    "TimmBackbone",
    "build_backbone",
    "list_backbones",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NetVLAD",
    "GeM",
    "MAC",
    "SPoC",
    "RMAC",
    "CRN",
    "MixVPR",
    "SALAD",
    "ClassTokenHead",
    "build_head",
    "list_heads",
    "REGION_NAMES",
    "PCAWhitening",
    "Adapter",
    "init_netvlad",
    "sample_local_descriptors",
]


def __getattr__(name: str):
    # timm is imported only when a timm backbone is asked for
    if name == "TimmBackbone":
        from sfrs.models.timm_backbone import TimmBackbone

        return TimmBackbone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
