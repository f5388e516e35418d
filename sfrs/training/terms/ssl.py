"""The six self-supervised terms on GeoPairs (VG-SSL, Xiao et al.): ``simclr``, ``moco``,
``byol``, ``simsiam``, ``barlow_twins``, ``vicreg``. Defaults are the spec's reference
hyper-parameters (``shared/spec/ssl_and_adaptation.md`` part A); the shipped
``configs/ssl_*.yaml`` scale the heads down for the synthetic city on a CPU.

The momentum encoders (MoCo, BYOL) are copies of the student and its projection made
when the term is built (at the start of each generation), updated after every optimiser
step, and saved with the term's state (as is MoCo's queue), so resume is exact.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sfrs.errors import ConfigError
from sfrs.training.terms.base import register_term
from sfrs.training.terms.geopair import GeoPairOptions, GeoPairTerm, mlp
from sfrs.training.terms.ssl_losses import barlow_twins, cosine_regression, moco_infonce, nt_xent, vicreg_parts


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameters and float buffers
    (batch-norm running statistics) alike."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for t, o in zip(target.buffers(), online.buffers()):
        if t.dtype.is_floating_point:
            t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
        else:
            t.copy_(o)


def frozen_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    for parameter in target.parameters():
        parameter.requires_grad_(False)
    return target


# ---------------------------------------------------------------------------- SimCLR
@dataclass(frozen=True)
class SimCLROptions(GeoPairOptions):
    temperature: float = 0.07


@register_term("simclr")
class SimCLRTerm(GeoPairTerm):
    """NT-Xent over the 2B projections of the pairs (head Linear(d, 1024))."""

    Options = SimCLROptions

    def pair_loss(self, batch, descriptors):
        x, y = self.pairs(batch, descriptors)
        z1, z2 = self.projection(x), self.projection(y)
        return nt_xent(z1, z2, self.options.temperature), z1, z2, {}


# ---------------------------------------------------------------------------- MoCo v2
@dataclass(frozen=True)
class MoCoOptions(GeoPairOptions):
    head_dim: int = 128
    head_layers: int = 2
    temperature: float = 0.07
    queue_size: int = 65536
    momentum: float = 0.999


@register_term("moco")
class MoCoTerm(GeoPairTerm):
    """q = online(x), k = momentum encoder(y) (no gradient); InfoNCE against a queue of
    earlier keys, which the batch's keys then enter (MoCo v2 head: 2-layer MLP)."""

    Options = MoCoOptions
    encodes_positive = False

    def __init__(self, options=None, context=None) -> None:
        super().__init__(options, context)
        if self.options.queue_size < 1 or not 0 <= self.options.momentum < 1:
            raise ConfigError("loss.terms.moco: queue_size must be >= 1 and momentum in [0, 1)")
        self.target_network = frozen_copy(context.network)
        self.target_projection = frozen_copy(self.projection)
        # MoCo starts from random unit keys; the queue is state, saved and restored
        self.register_buffer("queue", F.normalize(torch.randn(self.options.queue_size, self.options.head_dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("written", torch.zeros((), dtype=torch.long))

    def pair_loss(self, batch, descriptors):
        q = self.projection(self.first(descriptors.views))
        with torch.no_grad():
            self.target_network.eval()  # keys from the running statistics, as a frozen encoder
            k = F.normalize(self.target_projection(self.target_network(self.second(batch.views))), dim=1)
        loss = moco_infonce(q, k, self.queue.clone(), self.options.temperature)
        self.enqueue(k)
        fill = min(int(self.written), self.options.queue_size) / self.options.queue_size
        return loss, q, k, {"queue_fill": fill}

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        size = self.options.queue_size
        positions = (int(self.pointer) + torch.arange(len(keys), device=keys.device)) % size
        self.queue[positions] = keys[-size:] if len(keys) > size else keys
        self.pointer.fill_((int(self.pointer) + len(keys)) % size)
        self.written.add_(len(keys))

    def after_step(self) -> None:
        momentum_update(self.context.network, self.target_network, self.options.momentum)
        momentum_update(self.projection, self.target_projection, self.options.momentum)


# ---------------------------------------------------------------------------- BYOL / SimSiam
@dataclass(frozen=True)
class BYOLOptions(GeoPairOptions):
    head_dim: int = 256
    hidden_dim: int = 4096
    head_layers: int = 2
    #: hidden width of the predictor MLP (Linear-BN-ReLU-Linear).
    predictor_hidden_dim: int = 4096
    momentum: float = 0.99


@register_term("byol")
class BYOLTerm(GeoPairTerm):
    """(2 - 2 cos(pred(online(x)), sg target(y))) + the symmetric term; the target is a
    momentum copy of the student and its projection."""

    Options = BYOLOptions

    def __init__(self, options=None, context=None) -> None:
        super().__init__(options, context)
        o = self.options
        self.predictor = mlp(o.head_dim, o.predictor_hidden_dim, o.head_dim, 2)
        self.target_network = frozen_copy(context.network)
        self.target_projection = frozen_copy(self.projection)

    def pair_loss(self, batch, descriptors):
        x, y = self.pairs(batch, descriptors)
        z1, z2 = self.projection(x), self.projection(y)
        with torch.no_grad():
            self.target_network.eval()
            t1 = self.target_projection(self.target_network(self.first(batch.views)))
            t2 = self.target_projection(self.target_network(self.second(batch.views)))
        loss = cosine_regression(self.predictor(z1), t2) + cosine_regression(self.predictor(z2), t1)
        return loss, z1, z2, {}

    def after_step(self) -> None:
        momentum_update(self.context.network, self.target_network, self.options.momentum)
        momentum_update(self.projection, self.target_projection, self.options.momentum)


@dataclass(frozen=True)
class SimSiamOptions(GeoPairOptions):
    head_dim: int = 4096
    hidden_dim: int = 4096
    head_layers: int = 2
    predictor_hidden_dim: int = 1024


@register_term("simsiam")
class SimSiamTerm(GeoPairTerm):
    """BYOL without the momentum target: (2 - 2 cos(pred(z1), sg z2)) + symmetric."""

    Options = SimSiamOptions

    def __init__(self, options=None, context=None) -> None:
        super().__init__(options, context)
        o = self.options
        self.predictor = mlp(o.head_dim, o.predictor_hidden_dim, o.head_dim, 2)

    def pair_loss(self, batch, descriptors):
        x, y = self.pairs(batch, descriptors)
        z1, z2 = self.projection(x), self.projection(y)
        loss = cosine_regression(self.predictor(z1), z2) + cosine_regression(self.predictor(z2), z1)
        return loss, z1, z2, {}


# ---------------------------------------------------------------------------- Barlow Twins / VICReg
@dataclass(frozen=True)
class BarlowTwinsOptions(GeoPairOptions):
    head_dim: int = 2048
    hidden_dim: int = 2048
    head_layers: int = 2
    off_diagonal_weight: float = 0.0051


@register_term("barlow_twins")
class BarlowTwinsTerm(GeoPairTerm):
    """Cross-correlation of the standardised projections towards the identity."""

    Options = BarlowTwinsOptions

    def pair_loss(self, batch, descriptors):
        x, y = self.pairs(batch, descriptors)
        z1, z2 = self.projection(x), self.projection(y)
        return barlow_twins(z1, z2, self.options.off_diagonal_weight), z1, z2, {}


@dataclass(frozen=True)
class VICRegOptions(GeoPairOptions):
    head_dim: int = 4096
    hidden_dim: int = 4096
    head_layers: int = 2
    invariance_weight: float = 25.0
    variance_weight: float = 25.0
    covariance_weight: float = 1.0


@register_term("vicreg")
class VICRegTerm(GeoPairTerm):
    """Invariance + variance + covariance of the two branches' projections."""

    Options = VICRegOptions

    def pair_loss(self, batch, descriptors):
        x, y = self.pairs(batch, descriptors)
        z1, z2 = self.projection(x), self.projection(y)
        parts = vicreg_parts(z1, z2)
        o = self.options
        loss = (o.invariance_weight * parts["invariance"] + o.variance_weight * parts["variance"]
                + o.covariance_weight * parts["covariance"])
        return loss, z1, z2, {name: float(value.detach()) for name, value in parts.items()}
