"""The training objective: the student network and its active loss terms in one module.

``Objective.forward(batch)`` encodes every image of the batch once (global descriptors,
and the 9 region descriptors when a term needs them), encodes the extra views terms
asked for, and returns the weighted sum of the terms. Wrapping this one module in
DistributedDataParallel synchronises the network's and the terms' parameters alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from sfrs.training.terms import LossTerm, TermOutput, ViewRequest
from sfrs.training.tuples import TupleBatch


@dataclass
class BatchDescriptors:
    """Descriptors of one batch: ``global_`` (K, D), None when no term reads the tuple's
    images; ``regions`` (K, 9, D) when a term needs them, else None; ``views`` name ->
    (B, D) of the extra images the student encodes."""

    global_: Optional[Tensor]
    regions: Optional[Tensor]
    views: Dict[str, Tensor] = field(default_factory=dict)


@dataclass
class ObjectiveOutput:
    """``total`` (scalar with a graph), each term's unweighted value, diagnostics."""

    total: Tensor
    terms: Dict[str, Tensor]
    stats: Dict[str, float]


class Objective(nn.Module):
    """``sum_t weight_t * term_t(batch, descriptors)`` over the active terms.

    Args:
        network: the student (a :class:`~sfrs.models.GeoNet`).
        terms: name -> (effective weight, term), as :func:`~sfrs.training.terms.build_terms`
            returns them; their order is the order of the results' columns.
    """

    def __init__(self, network: nn.Module, terms: Dict[str, Tuple[float, LossTerm]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("the objective has no active loss term (every weight is 0 in this generation)")
        self.network = network
        self.terms = nn.ModuleDict({name: term for name, (_, term) in terms.items()})
        self.weights = {name: float(weight) for name, (weight, _) in terms.items()}
        self.views: Dict[str, ViewRequest] = {}
        for name, term in self.terms.items():
            for view_name, request in term.views().items():
                if self.views.get(view_name, request) != request:
                    raise ValueError(f"loss term '{name}' asks for a view '{view_name}' that another term defines differently")
                self.views[view_name] = request

    @property
    def needs_regions(self) -> bool:
        return any(term.needs_regions for term in self.terms.values())

    @property
    def needs_difficult_positives(self) -> bool:
        return any(term.needs_difficult_positives for term in self.terms.values())

    @property
    def needs_hard_negatives(self) -> bool:
        return any(term.needs_hard_negatives for term in self.terms.values())

    @property
    def needs_tuple_images(self) -> bool:
        return any(term.needs_tuple_images for term in self.terms.values())

    def describe(self) -> str:
        return " + ".join(f"{self.weights[name]:g} x {term.describe()}" for name, term in self.terms.items())

    def encode(self, batch: TupleBatch) -> BatchDescriptors:
        """One network pass over the batch's images (skipped when no term reads them) and
        one per requested view that asks to be encoded by the student."""
        if not self.needs_tuple_images:
            descriptors = BatchDescriptors(global_=None, regions=None)
        elif self.needs_regions:
            regions = self.network(batch.images, regions=True)
            descriptors = BatchDescriptors(global_=regions[:, 0], regions=regions)
        else:
            descriptors = BatchDescriptors(global_=self.network(batch.images), regions=None)
        descriptors.views = {name: self.network(images) for name, images in batch.views.items()
                             if self.views[name].encode}
        return descriptors

    def forward(self, batch: TupleBatch) -> ObjectiveOutput:
        descriptors = self.encode(batch)
        values: Dict[str, Tensor] = {}
        stats: Dict[str, float] = {}
        total: Optional[Tensor] = None
        for name, term in self.terms.items():
            out = term(batch, descriptors)
            value = out.value if isinstance(out, TermOutput) else out
            if isinstance(out, TermOutput):
                stats.update({f"{name}/{key}": v for key, v in out.stats.items()})
            values[name] = value
            weighted = self.weights[name] * value
            total = weighted if total is None else total + weighted
        return ObjectiveOutput(total=total, terms=values, stats=stats)

    @torch.no_grad()
    def after_step(self) -> None:
        for term in self.terms.values():
            term.after_step()
