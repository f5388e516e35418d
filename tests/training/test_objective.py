import pytest
import torch

from sfrs.config import GenerationConfig, LossConfig
from sfrs.training import objective as objective_module
from sfrs.training.losses import sare_ind_loss, soft_region_loss
from sfrs.training.objective import BatchDescriptors, Objective
from sfrs.training.tuples import TupleBatch


def batch_and_descriptors():
    torch.manual_seed(0)
    regions = torch.nn.functional.normalize(torch.randn(12, 9, 8), dim=-1)
    # two tuples of 6 images: query, positive, 2 negatives, 2 difficult (one padded)
    batch = TupleBatch(
        images=torch.zeros(12, 3, 4, 4), query=torch.tensor([0, 6]), positive=torch.tensor([1, 7]),
        negatives=torch.tensor([[2, 3], [8, 9]]), difficult=torch.tensor([[4, 5], [10, -1]]),
        rows=torch.tensor([1, 0]),
    )
    return batch, BatchDescriptors(global_=regions[:, 0], regions=regions)


def test_generation_zero__is_the_hard_loss_on_global_descriptors():
    batch, d = batch_and_descriptors()
    out = Objective(LossConfig(hard="sare_ind", hard_weight=2.0), GenerationConfig(soft_weight=0.0), 0)(batch, d)
    expected = sare_ind_loss(d.global_[batch.query], d.global_[batch.positive], d.global_[batch.negatives], 0.07)
    torch.testing.assert_close(out.total, 2.0 * expected)
    assert "soft" not in out.terms


def test_later_generation__adds_weighted_soft_loss_and_region_negatives():
    batch, d = batch_and_descriptors()
    teacher = torch.randn(2, 2, 9)
    schedule = GenerationConfig(soft_weight=0.5, teacher_temperature=0.05)
    out = Objective(LossConfig(), schedule, 1, teacher_similarities=teacher)(batch, d)
    anchor = d.global_[batch.query]
    # independent: pick, per negative, the region with the highest dot product by a loop
    chosen = torch.stack([
        torch.stack([d.regions[n][int(torch.argmax(d.regions[n] @ anchor[b]))] for n in batch.negatives[b].tolist()])
        for b in range(2)
    ])
    hard = sare_ind_loss(anchor, d.global_[batch.positive], chosen, 0.07)
    soft = soft_region_loss(anchor, d.regions[batch.difficult.clamp(min=0)], teacher[batch.rows],
                            batch.difficult >= 0, 0.07, 0.05)
    torch.testing.assert_close(out.terms["hard"], hard)
    torch.testing.assert_close(out.total, hard + 0.5 * soft)
    assert 0.0 <= out.stats["agreement"] <= 1.0


def test_extra_terms__join_through_the_config(monkeypatch):
    batch, d = batch_and_descriptors()
    monkeypatch.setitem(objective_module.EXTRA_TERMS, "spread", lambda b, desc: desc.global_.var())
    out = Objective(LossConfig(extra_terms={"spread": 3.0}), GenerationConfig(), 0)(batch, d)
    torch.testing.assert_close(out.total, out.terms["hard"] + 3.0 * d.global_.var())
    with pytest.raises(ValueError, match="unknown loss term 'nope'"):
        Objective(LossConfig(extra_terms={"nope": 1.0}), GenerationConfig(), 0)
