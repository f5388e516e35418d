"""The hard (contrastive) term: SARE or triplet on (anchor, best positive, hard negatives)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from sfrs.errors import ConfigError
from sfrs.training.losses import HARD_LOSSES, hard_loss, select_negative_regions
from sfrs.training.terms.base import LossTerm, register_term


@dataclass(frozen=True)
class HardOptions:
    #: ``sare_ind``, ``sare_joint`` (SARE, Liu et al., ICCV 2019) or ``triplet``.
    loss: str = "sare_ind"
    #: triplet margin on (non-squared) L2 distances; the reference passes sqrt(0.1).
    margin: float = math.sqrt(0.1)
    #: from this generation on, each negative is replaced by its region most similar to
    #: the anchor (SFRS §3.2; reference: 1).
    region_negatives_from: int = 1


@register_term("hard")
class HardTerm(LossTerm):
    """SARE-ind / SARE-joint at ``loss.temperature``, or the triplet margin loss; from
    ``region_negatives_from`` on, on the negatives' most anchor-like regions."""

    Options = HardOptions

    def __init__(self, options: HardOptions = None, context=None) -> None:
        super().__init__(options, context)
        if self.options.loss not in HARD_LOSSES:
            raise ConfigError(
                f"loss.terms.hard.loss '{self.options.loss}' is unknown (choose {', '.join(sorted(HARD_LOSSES))})"
            )
        if self.options.margin < 0:
            raise ConfigError("loss.terms.hard.margin must be >= 0")
        generation = context.generation if context is not None else 0
        self.temperature = context.temperature if context is not None else 0.07
        self.region_negatives = generation >= self.options.region_negatives_from

    @property
    def needs_regions(self) -> bool:
        return self.region_negatives

    @property
    def needs_hard_negatives(self) -> bool:
        return True

    def forward(self, batch, descriptors) -> Tensor:
        anchor = descriptors.global_[batch.query]
        positive = descriptors.global_[batch.positive]
        if self.region_negatives:
            negatives = select_negative_regions(anchor, descriptors.regions[batch.negatives])
        else:
            negatives = descriptors.global_[batch.negatives]
        return hard_loss(self.options.loss, anchor, positive, negatives,
                         temperature=self.temperature, margin=self.options.margin)

    def describe(self) -> str:
        what = f"triplet (margin {self.options.margin:.3g})" if self.options.loss == "triplet" else \
            f"{self.options.loss} (tau {self.temperature:g})"
        return f"hard: {what}" + ("; negatives replaced by their most similar region" if self.region_negatives else "")
