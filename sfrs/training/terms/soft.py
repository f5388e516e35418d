"""The SFRS soft region term: the student's image-to-region similarity distribution over a
query's difficult positives, against the teacher's cached labels (Ge et al., ECCV 2020)."""
from __future__ import annotations

from sfrs.config import GenerationConfig
from sfrs.training.losses import soft_label_stats, soft_region_loss
from sfrs.training.terms.base import LossTerm, TermOutput, register_term


@register_term("soft")
class SoftRegionTerm(LossTerm):
    """Soft cross-entropy over (difficult positive x 9 regions); the labels come with the
    batch (``batch.teacher``, raw teacher cosine similarities) and are sharpened with
    this generation's teacher temperature. Its weight is ``loss.terms.soft.weight`` times
    the generation's ``soft_weight`` (0 in generation 0: no teacher yet)."""

    @classmethod
    def generation_weight(cls, schedule: GenerationConfig) -> float:
        return schedule.soft_weight

    def __init__(self, options=None, context=None) -> None:
        super().__init__(options, context)
        self.student_temperature = context.temperature if context is not None else 0.07
        self.teacher_temperature = context.schedule.teacher_temperature if context is not None else 0.07

    @property
    def needs_regions(self) -> bool:
        return True

    @property
    def needs_difficult_positives(self) -> bool:
        return True

    def forward(self, batch, descriptors) -> TermOutput:
        anchor = descriptors.global_[batch.query]
        mask = batch.difficult >= 0
        regions = descriptors.regions[batch.difficult.clamp(min=0)]  # (B, M, 9, D)
        taus = dict(student_temperature=self.student_temperature, teacher_temperature=self.teacher_temperature)
        value = soft_region_loss(anchor, regions, batch.teacher, mask, **taus)
        stats = soft_label_stats(anchor.detach(), regions.detach(), batch.teacher, mask, **taus)
        return TermOutput(value=value, stats=stats)

    def describe(self) -> str:
        return (f"soft regions (teacher tau {self.teacher_temperature:g}, "
                f"student tau {self.student_temperature:g})")
