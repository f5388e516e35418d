"""GeoPair (VG-SSL, Xiao et al.): self-supervised pairs built from geography.

x = the query, augmented (random resized crop, horizontal flip); y = its positive, the
database image nearest in the current feature space among those within the training
radius (the tuple's best positive), plainly resized. Optionally the tuple's hardest
negative enters as a self-pair of two augmented views of itself.

:class:`GeoPairTerm` is the base of the six self-supervised terms: it asks for the views,
builds the projection (an optional linear reduction for high-dimensional descriptors
such as NetVLAD's, then an MLP head) and hands (z1, z2) to :meth:`GeoPairTerm.pair_loss`.
The projection lives in the term, so it trains with the network and never enters the
saved inference model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn
from torchvision import transforms

from sfrs.errors import ConfigError
from sfrs.training.terms.base import LossTerm, TermOutput, ViewRequest
from sfrs.training.terms.ssl_losses import embedding_stats

#: descriptors wider than this are reduced (learned linear map) before the head by default.
AUTO_REDUCE_ABOVE = 4096
AUTO_REDUCE_TO = 512



@dataclass(frozen=True)
class GeoPairOptions:
    #: output size of the projection head.
    head_dim: int = 1024
    #: hidden width of a 2-layer head (Linear-BN-ReLU-Linear).
    hidden_dim: int = 2048
    #: 1 = a single Linear, 2 = Linear-BN-ReLU-Linear.
    head_layers: int = 1
    #: learned linear reduction of the descriptor before the head: None = automatic (to
    #: 512 when the descriptor has more than 4,096 dimensions), 0 = none, N = to N.
    reduce_dim: Optional[int] = None
    #: random resized crop scale range of the query view.
    crop_scale: Tuple[float, float] = (0.75, 1.0)
    flip: bool = True
    #: add each tuple's hardest negative as a self-pair of two augmented views.
    self_pairs: bool = False


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int) -> nn.Module:
    """1 layer: Linear; 2 layers: Linear-BN-ReLU-Linear (SimCLR / BYOL style heads)."""
    if layers == 1:
        return nn.Linear(in_dim, out_dim)
    if layers == 2:
        return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                             nn.Linear(hidden_dim, out_dim))
    raise ValueError(f"head_layers must be 1 or 2, got {layers}")


class GeoPairTerm(LossTerm):
    """Base of the self-supervised terms; subclasses define :meth:`pair_loss`."""

    Options = GeoPairOptions

    def __init__(self, options=None, context=None) -> None:
        super().__init__(options, context)
        o = self.options
        if context is None or context.network is None:
            raise ValueError(f"loss term '{self.name}' needs the network (its size and preprocessing)")
        if o.head_layers not in (1, 2) or o.head_dim < 1 or o.hidden_dim < 1:
            raise ConfigError(f"loss.terms.{self.name}: head_layers must be 1 or 2 and sizes positive")
        low, high = o.crop_scale
        if not 0 < low <= high <= 1:
            raise ConfigError(f"loss.terms.{self.name}.crop_scale must satisfy 0 < low <= high <= 1")
        network = context.network
        self.descriptor_dim = int(network.head_dim)
        reduce = o.reduce_dim
        if reduce is None:
            reduce = AUTO_REDUCE_TO if self.descriptor_dim > AUTO_REDUCE_ABOVE else 0
        self.projection = self.build_projection(self.descriptor_dim, reduce)
        size = tuple(network.input_size)
        normalise = [transforms.ToTensor(), transforms.Normalize(network.mean, network.std)]
        augment = [transforms.RandomResizedCrop(size, scale=tuple(o.crop_scale), antialias=True)]
        if o.flip:
            augment.append(transforms.RandomHorizontalFlip())
        self.augmented = transforms.Compose(augment + normalise)
        self.plain = transforms.Compose([transforms.Resize(size, antialias=True)] + normalise)

    def build_projection(self, in_dim: int, reduce: int) -> nn.Module:
        o = self.options
        head = mlp(reduce or in_dim, o.hidden_dim, o.head_dim, o.head_layers)
        return nn.Sequential(nn.Linear(in_dim, reduce), head) if reduce else head

    # -- what the term asks for -----------------------------------------------------
    @property
    def needs_tuple_images(self) -> bool:
        return False

    @property
    def needs_hard_negatives(self) -> bool:
        return self.options.self_pairs

    def view_names(self) -> Tuple[str, str, str, str]:
        """This term's views (named after it: two terms never share augmentations):
        query, positive, and the negative's two views."""
        return tuple(f"{self.name}/{part}" for part in ("query", "positive", "negative_a", "negative_b"))

    def views(self) -> Dict[str, ViewRequest]:
        query, positive, negative_a, negative_b = self.view_names()
        views = {query: ViewRequest("query", self.augmented),
                 positive: ViewRequest("positive", self.plain, encode=self.encodes_positive)}
        if self.options.self_pairs:
            views[negative_a] = ViewRequest("negative", self.augmented)
            views[negative_b] = ViewRequest("negative", self.augmented, encode=self.encodes_positive)
        return views

    #: whether the student encodes y (False when only a momentum encoder reads it).
    encodes_positive = True

    # -- the loss ---------------------------------------------------------------------
    def first(self, table: Dict[str, Tensor]) -> Tensor:
        """The x side of the pairs, (B', ...): query views, then each negative's first view;
        ``table`` is ``descriptors.views`` (student descriptors) or ``batch.views`` (images)."""
        query, _, negative_a, _ = self.view_names()
        return torch.cat([table[query]] + ([table[negative_a]] if self.options.self_pairs else []))

    def second(self, table: Dict[str, Tensor]) -> Tensor:
        """The y side, row-aligned with :meth:`first`: positives, then the negatives' second views."""
        _, positive, _, negative_b = self.view_names()
        return torch.cat([table[positive]] + ([table[negative_b]] if self.options.self_pairs else []))

    def pairs(self, batch, descriptors) -> Tuple[Tensor, Tensor]:
        """(x, y) student descriptors of the pairs, (B', D) each."""
        return self.first(descriptors.views), self.second(descriptors.views)

    def forward(self, batch, descriptors) -> TermOutput:
        value, z1, z2, extra = self.pair_loss(batch, descriptors)
        return TermOutput(value=value, stats={**embedding_stats(z1, z2), **extra})

    def pair_loss(self, batch, descriptors) -> Tuple[Tensor, Tensor, Tensor, Dict[str, float]]:
        """(loss, z1, z2 for the diagnostics, extra stats)."""
        raise NotImplementedError

    def describe(self) -> str:
        pairs = "query/positive pairs" + (" + negative self-pairs" if self.options.self_pairs else "")
        params = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return f"{self.name} on GeoPair {pairs} (head {params:,} parameters)"
