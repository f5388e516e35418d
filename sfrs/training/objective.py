"""The training objective: the student network and its active loss terms in one module.

``Objective.forward(batch)`` encodes every image of the batch once (global descriptors,
and the 9 region descriptors when a term needs them), encodes the extra views terms
asked for, and returns the weighted sum of the terms. Wrapping this one module in
DistributedDataParallel synchronises the network's and the terms' parameters alike.

A step's batch may go through in passes of fewer tuples (:func:`split_batch`,
``optim.tuples_per_pass``) whose gradients add up to the whole batch's: every term's
value is a mean, and each pass is weighted by its share of the items that mean runs
over (:func:`pass_shares`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

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

    def pass_total(self, out: ObjectiveOutput, shares: Dict[str, float]) -> Tensor:
        """``sum_t weight_t * share_t * term_t``: one pass's part of the step's loss
        (``shares`` from :func:`pass_shares`, this pass's entry of each term)."""
        total: Optional[Tensor] = None
        for name, value in out.terms.items():
            weighted = (self.weights[name] * shares[name]) * value
            total = weighted if total is None else total + weighted
        return total


def term_mean_over(term: LossTerm, batch: TupleBatch) -> Optional[int]:
    """How many items ``term``'s value on ``batch`` is the mean of; None when the value is
    not a mean of per-tuple values (it cannot then be split into passes).

    A term says so itself with a ``mean_over(batch)`` method. Otherwise: a term reading
    difficult positives averages over the tuples that have at least one (the soft region
    loss), a term reading only extra views relates the tuples of its batch (in-batch
    negatives, batch statistics, a queue: None), any other term averages over the tuples
    (the hard loss: over tuples and a fixed number of negatives each).
    """
    own = getattr(term, "mean_over", None)
    if callable(own):
        return own(batch)
    if not getattr(term, "needs_tuple_images", True):
        return None
    if term.needs_difficult_positives:
        return int((batch.difficult >= 0).any(dim=1).sum())
    return int(batch.query.numel())


def pass_shares(objective: Objective, passes: Sequence[TupleBatch]) -> List[Dict[str, float]]:
    """Each pass's weight in each term's mean over the step: c_p / sum_q c_q, with c_p the
    number of items the term averages in pass p (:func:`term_mean_over`). Weighted so,
    the passes' values and gradients add up to those of the whole batch. A term with no
    item in the whole step (value 0) gets share 0 in every pass.

    Returns:
        One dict per pass: term name -> share.
    Raises:
        ValueError: more than one pass and a term whose value is not a per-tuple mean.
    """
    shares: List[Dict[str, float]] = [{} for _ in passes]
    for name, term in objective.terms.items():
        counts = [term_mean_over(term, part) for part in passes]
        if len(passes) == 1:
            shares[0][name] = 1.0
            continue
        if any(count is None for count in counts):
            raise ValueError(
                f"loss term '{name}' relates the tuples of a batch (its value is not a mean over tuples), so a "
                f"step cannot be split into passes: set optim.tuples_per_pass to 0 or to optim.tuples_per_step"
            )
        whole = sum(counts)
        for p, count in enumerate(counts):
            shares[p][name] = count / whole if whole else 0.0
    return shares


#: TupleBatch fields :func:`split_batch` knows how to cut.
_SPLIT_FIELDS = {"images", "query", "positive", "negatives", "difficult", "teacher", "views"}


def split_batch(batch: TupleBatch, tuples_per_pass: int) -> List[TupleBatch]:
    """``batch`` as passes of at most ``tuples_per_pass`` consecutive tuples (0, or at
    least the batch's tuples: the batch itself).

    Relies on the collate layout: tuple b's images are ``images[query[b]:query[b + 1]]``;
    positions are shifted to each pass's images, padding (-1) stays.

    Raises:
        ValueError: a tuple refers to an image outside its own block.
    """
    count = int(batch.query.numel())
    if tuples_per_pass <= 0 or tuples_per_pass >= count:
        return [batch]
    unknown = {f.name for f in dataclasses.fields(batch)} - _SPLIT_FIELDS
    if unknown:
        raise TypeError(f"split_batch cannot cut TupleBatch field(s) {', '.join(sorted(unknown))}")
    starts = batch.query.tolist() + [int(batch.images.shape[0])]
    passes = []
    for first in range(0, count, tuples_per_pass):
        last = min(first + tuples_per_pass, count)
        lo, hi = starts[first], starts[last]
        tuples = slice(first, last)

        def shift(positions: Tensor) -> Tensor:
            valid = positions >= 0
            if bool(((positions < lo) & valid).any() or (positions >= hi).any()):
                raise ValueError(f"tuples {first}..{last - 1} refer to images outside their own "
                                 f"({lo}..{hi - 1}): the batch is not laid out tuple by tuple")
            return torch.where(valid, positions - lo, positions)

        passes.append(TupleBatch(
            images=batch.images[lo:hi],
            query=shift(batch.query[tuples]),
            positive=shift(batch.positive[tuples]),
            negatives=shift(batch.negatives[tuples]),
            difficult=shift(batch.difficult[tuples]),
            teacher=batch.teacher[tuples] if batch.teacher is not None else None,
            views={name: view[tuples] for name, view in batch.views.items()},
        ))
    return passes
