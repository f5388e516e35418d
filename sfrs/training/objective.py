"""The training objective: a weighted sum of named loss terms over one batch of tuples.

``hard`` is the contrastive loss on (anchor, best positive, negatives) and ``soft`` the
SFRS soft region cross-entropy against cached teacher labels. Further terms (e.g.
self-supervised losses on query/positive pairs) register in :data:`EXTRA_TERMS` and are
weighted from the config without touching the training loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

from torch import Tensor

from sfrs.config import GenerationConfig, LossConfig
from sfrs.training.losses import hard_loss, select_negative_regions, soft_label_stats, soft_region_loss
from sfrs.training.tuples import TupleBatch


@dataclass
class BatchDescriptors:
    """Descriptors of one batch: ``regions`` (K, 9, D) when regions are needed, else
    ``global_`` (K, D) only."""

    global_: Tensor
    regions: Optional[Tensor]


@dataclass
class ObjectiveOutput:
    total: Tensor
    terms: Dict[str, Tensor]
    stats: Dict[str, float]


class Objective:
    """Computes ``hard_weight * hard + soft_weight * soft (+ extra terms)`` for one generation.

    Args:
        loss: the loss section of the config.
        schedule: this generation's schedule entry (soft weight, teacher temperature).
        generation: index of the generation (region negatives start at
            ``loss.region_negatives_from``).
        teacher_similarities: (Q, M, 9) cached teacher similarities per kept query row,
            required when the soft weight is positive.
    """

    def __init__(
        self,
        loss: LossConfig,
        schedule: GenerationConfig,
        generation: int,
        teacher_similarities: Optional[Tensor] = None,
    ) -> None:
        self.loss = loss
        self.schedule = schedule
        self.region_negatives = generation >= loss.region_negatives_from
        self.uses_soft = schedule.soft_weight > 0
        if self.uses_soft and teacher_similarities is None:
            raise ValueError("a positive soft weight needs teacher soft labels")
        self.teacher_similarities = teacher_similarities
        unknown = sorted(set(loss.extra_terms) - set(EXTRA_TERMS))
        if unknown:
            raise ValueError(
                f"unknown loss term '{unknown[0]}' in loss.extra_terms (registered: {', '.join(sorted(EXTRA_TERMS)) or 'none'})"
            )

    @property
    def needs_regions(self) -> bool:
        return self.region_negatives or self.uses_soft

    @property
    def needs_difficult_positives(self) -> bool:
        return self.uses_soft

    def describe(self) -> str:
        parts = [f"{self.loss.hard_weight:g} x {self.loss.hard}"]
        if self.uses_soft:
            parts.append(
                f"{self.schedule.soft_weight:g} x soft regions (teacher tau {self.schedule.teacher_temperature:g}, "
                f"student tau {self.loss.temperature:g})"
            )
        if self.region_negatives:
            parts.append("negatives replaced by their most similar region")
        return " + ".join(parts[:2]) + ("; " + parts[2] if len(parts) > 2 else "")

    def __call__(self, batch: TupleBatch, descriptors: BatchDescriptors) -> ObjectiveOutput:
        anchor = descriptors.global_[batch.query]
        positive = descriptors.global_[batch.positive]
        if self.region_negatives:
            negatives = select_negative_regions(anchor, descriptors.regions[batch.negatives])
        else:
            negatives = descriptors.global_[batch.negatives]
        hard = hard_loss(
            self.loss.hard, anchor, positive, negatives,
            temperature=self.loss.temperature, margin=self.loss.margin,
        )
        terms = {"hard": hard}
        total = self.loss.hard_weight * hard
        stats: Dict[str, float] = {}
        if self.uses_soft:
            mask = batch.difficult >= 0
            regions = descriptors.regions[batch.difficult.clamp(min=0)]  # (B, M, 9, D)
            teacher = self.teacher_similarities[batch.rows.cpu()].to(anchor.device)
            soft = soft_region_loss(
                anchor, regions, teacher, mask,
                student_temperature=self.loss.temperature,
                teacher_temperature=self.schedule.teacher_temperature,
            )
            terms["soft"] = soft
            total = total + self.schedule.soft_weight * soft
            stats = soft_label_stats(
                anchor.detach(), regions.detach(), teacher, mask,
                student_temperature=self.loss.temperature,
                teacher_temperature=self.schedule.teacher_temperature,
            )
        for name, weight in self.loss.extra_terms.items():
            value = EXTRA_TERMS[name](batch, descriptors)
            terms[name] = value
            total = total + weight * value
        terms["total"] = total
        return ObjectiveOutput(total=total, terms=terms, stats=stats)


#: name -> callable(batch, descriptors) -> Tensor; weighted by ``loss.extra_terms``.
EXTRA_TERMS: Dict[str, Callable[[TupleBatch, BatchDescriptors], Tensor]] = {}


def compute_descriptors(model, images: Tensor, needs_regions: bool) -> BatchDescriptors:
    """One backbone pass for every image of the batch (``model`` may be DDP-wrapped)."""
    if needs_regions:
        regions = model(images, regions=True)
        return BatchDescriptors(global_=regions[:, 0], regions=regions)
    return BatchDescriptors(global_=model(images), regions=None)
