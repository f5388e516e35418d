"""The objective and its loss terms, against formulas written out in the tests."""
import math

import pytest
import torch

from sfrs.config import GenerationConfig, LossConfig
from sfrs.errors import ConfigError
from sfrs.training import LossTerm, Objective, TermContext, TupleBatch, build_terms, register_term
from sfrs.training.terms import TERMS


class LookupNetwork(torch.nn.Module):
    """Image k carries its index in pixel (0, 0, 0); the network returns table[k]."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table.clone())

    def forward(self, images, regions=False):
        index = images[:, 0, 0, 0].long()
        rows = torch.nn.functional.normalize(self.table[index], dim=-1)
        return rows if regions else rows[:, 0]


def make_batch():
    torch.manual_seed(0)
    table = torch.randn(12, 9, 8, dtype=torch.float64)
    images = torch.zeros(12, 3, 2, 2, dtype=torch.float64)
    images[:, 0, 0, 0] = torch.arange(12)
    # two tuples of 6 images: query, positive, 2 negatives, 2 difficult (one padded)
    batch = TupleBatch(
        images=images, query=torch.tensor([0, 6]), positive=torch.tensor([1, 7]),
        negatives=torch.tensor([[2, 3], [8, 9]]), difficult=torch.tensor([[4, 5], [10, -1]]),
        teacher=torch.randn(2, 2, 9, dtype=torch.float64),
    )
    return LookupNetwork(table), batch


def objective(network, loss, schedule, generation):
    context = TermContext(generation=generation, schedule=schedule, temperature=loss.temperature, network=network)
    return Objective(network, build_terms(loss, context))


def naive_sare_ind(a, p, negatives, tau):
    total = 0.0
    for n in negatives:
        sp, sn = float(a @ p) / tau, float(a @ n) / tau
        total += -math.log(math.exp(sp) / (math.exp(sp) + math.exp(sn)))
    return total / len(negatives)


def naive_soft(a, regions_per_positive, teacher, tau_s, tau_t):
    """-sum p_t log p_s over every (positive, region) entry of one tuple."""
    student = [float(a @ r) / tau_s for regions in regions_per_positive for r in regions]
    target = [float(t) / tau_t for row in teacher for t in row]
    zs = math.log(sum(math.exp(s) for s in student))
    zt = sum(math.exp(t) for t in target)
    return -sum(math.exp(t) / zt * (s - zs) for s, t in zip(student, target))


def descriptors_of(network):
    return torch.nn.functional.normalize(network.table.detach(), dim=-1)


def test_generation_zero__is_the_weighted_hard_loss_on_global_descriptors():
    network, batch = make_batch()
    loss = LossConfig(terms={"hard": {"weight": 2.0}, "soft": {"weight": 1.0}})
    out = objective(network, loss, GenerationConfig(soft_weight=0.0), 0)(batch)
    d = descriptors_of(network)[:, 0]
    expected = sum(naive_sare_ind(d[q], d[p], d[list(n)], 0.07)
                   for q, p, n in ((0, 1, (2, 3)), (6, 7, (8, 9)))) / 2
    assert set(out.terms) == {"hard"}
    assert out.total.item() == pytest.approx(2.0 * expected, rel=1e-9)


def test_later_generation__region_negatives_plus_soft_term_as_in_the_paper():
    network, batch = make_batch()
    schedule = GenerationConfig(soft_weight=0.5, teacher_temperature=0.05)
    out = objective(network, LossConfig(), schedule, 1)(batch)
    d = descriptors_of(network)
    hard, soft = 0.0, 0.0
    tuples = ((0, 1, (2, 3), (4, 5)), (6, 7, (8, 9), (10,)))
    for b, (q, p, negatives, difficult) in enumerate(tuples):
        a = d[q, 0]
        chosen = [d[n][int(torch.argmax(d[n] @ a))] for n in negatives]  # the most anchor-like region
        hard += naive_sare_ind(a, d[p, 0], torch.stack(chosen), 0.07)
        soft += naive_soft(a, [d[m] for m in difficult], batch.teacher[b, : len(difficult)], 0.07, 0.05)
    assert out.terms["hard"].item() == pytest.approx(hard / 2, rel=1e-9)
    assert out.terms["soft"].item() == pytest.approx(soft / 2, rel=1e-9)
    assert out.total.item() == pytest.approx(hard / 2 + 0.5 * soft / 2, rel=1e-9)
    assert 0.0 <= out.stats["soft/agreement"] <= 1.0


def test_soft_term__absent_while_its_generation_weight_is_zero():
    network, _ = make_batch()
    obj = objective(network, LossConfig(), GenerationConfig(soft_weight=0.0), 3)
    assert list(obj.terms) == ["hard"] and not obj.needs_difficult_positives


def test_registered_term__trains_with_its_parameter_and_after_step_hook():
    @register_term("unit_scale")
    class Scale(LossTerm):
        def __init__(self, options=None, context=None):
            super().__init__(options, context)
            self.scale = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))

        def forward(self, batch, descriptors):
            return (self.scale - 3.0) ** 2 + 0 * descriptors.global_.sum()

        def after_step(self):
            self.steps += 1

    try:
        network, batch = make_batch()
        loss = LossConfig(terms={"hard": {"weight": 1.0}, "unit_scale": {"weight": 0.5}})
        obj = objective(network, loss, GenerationConfig(), 0)
        assert any(p is obj.terms["unit_scale"].scale for p in obj.parameters())
        optimizer = torch.optim.SGD(obj.parameters(), lr=0.1)
        out = obj(batch)
        assert out.total.item() == pytest.approx(out.terms["hard"].item() + 0.5 * 4.0, rel=1e-9)
        out.total.backward()
        optimizer.step()
        obj.after_step()
        # d/ds 0.5 (s - 3)^2 = s - 3 = -2 at s = 1: one SGD step of 0.1 gives 1.2
        assert obj.terms["unit_scale"].scale.item() == pytest.approx(1.2)
        assert obj.state_dict()["terms.unit_scale.steps"].item() == 1
    finally:
        TERMS.pop("unit_scale")


@pytest.mark.parametrize("terms, message", [
    ({"nope": {"weight": 1.0}}, r"loss.terms.nope: unknown loss term"),
    ({"hard": {"weight": 1.0, "temprature": 0.1}}, r"unknown config key 'loss.terms.hard.temprature'"),
    ({"hard": {"weight": 1.0, "loss": "contrastive"}}, r"loss.terms.hard.loss 'contrastive' is unknown"),
    ({"hard": {"weight": -1.0}}, r"loss.terms.hard.weight must be a number >= 0"),
])
def test_bad_terms__are_named(terms, message):
    network, _ = make_batch()
    with pytest.raises(ConfigError, match=message):
        objective(network, LossConfig(terms=terms), GenerationConfig(), 0)


def test_triplet_margin__defaults_to_the_reference_sqrt_0_1():
    network, batch = make_batch()
    loss = LossConfig(terms={"hard": {"loss": "triplet"}})
    out = objective(network, loss, GenerationConfig(), 0)(batch)
    d = descriptors_of(network)[:, 0]
    expected = 0.0
    for q, p, negatives in ((0, 1, (2, 3)), (6, 7, (8, 9))):
        for n in negatives:
            # torch's triplet_margin_loss adds eps = 1e-6 inside each distance
            dp = float(torch.norm(d[q] - d[p] + 1e-6))
            dn = float(torch.norm(d[q] - d[n] + 1e-6))
            expected += max(0.0, dp - dn + math.sqrt(0.1)) / 4
    assert out.terms["hard"].item() == pytest.approx(expected, rel=1e-7)
