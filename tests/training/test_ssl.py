"""Self-supervised GeoPair terms: each loss against its formula in float64 (loops written
here), the terms' state (queue, momentum encoders) and exact resume."""
import math

import numpy as np
import pytest
import torch

from sfrs.config import load_config
from sfrs.models import load_network
from sfrs.training import train
from sfrs.training.terms.ssl import momentum_update
from sfrs.training.terms.ssl_losses import barlow_twins, cosine_regression, moco_infonce, nt_xent, vicreg_parts
from sfrs.training.trainer import Interrupted
from tests.tiny import TINY_TRAINING


def pair(b=6, e=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, e, generator=g, dtype=torch.float64), torch.randn(b, e, generator=g, dtype=torch.float64)


def unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def test_nt_xent__matches_the_simclr_formula():
    z1, z2 = pair()
    rows = [unit(r) for r in torch.cat([z1, z2]).tolist()]
    n, tau, total = len(z1), 0.07, 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        denominator = sum(math.exp(dot(rows[i], rows[k]) / tau) for k in range(2 * n) if k != i)
        total += -(dot(rows[i], rows[positive]) / tau - math.log(denominator))
    assert nt_xent(z1, z2, tau).item() == pytest.approx(total / (2 * n), rel=1e-10)


def test_moco_infonce__matches_the_formula():
    q, k = pair(4, 3, seed=1)
    queue = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float64), dim=1)
    tau, total = 0.2, 0.0
    for qi, ki in zip(q.tolist(), k.tolist()):
        qi, ki = unit(qi), unit(ki)
        logits = [dot(qi, ki) / tau] + [dot(qi, row) / tau for row in queue.tolist()]
        total += -(logits[0] - math.log(sum(math.exp(x) for x in logits)))
    assert moco_infonce(q, k, queue, tau).item() == pytest.approx(total / 4, rel=1e-10)


def test_cosine_regression__is_2_minus_2_cos_and_stops_the_target_gradient():
    p, t = pair(3, 4, seed=2)
    p.requires_grad_(True)
    t.requires_grad_(True)
    expected = sum(2 - 2 * dot(unit(a), unit(b)) for a, b in zip(p.tolist(), t.tolist())) / 3
    value = cosine_regression(p, t)
    assert value.item() == pytest.approx(expected, rel=1e-10)
    value.backward()
    assert t.grad is None and p.grad is not None


def test_barlow_twins__matches_the_formula():
    z1, z2 = pair(8, 3, seed=3)
    b, lam, eps = 8, 0.0051, 1e-4

    def standardise(z):
        cols = list(zip(*z.tolist()))
        out = []
        for col in cols:
            mean = sum(col) / b
            var = sum((x - mean) ** 2 for x in col) / b
            out.append([(x - mean) / math.sqrt(var + eps) for x in col])
        return out  # per dimension

    a, c = standardise(z1), standardise(z2)
    total = 0.0
    for i in range(3):
        for j in range(3):
            cij = sum(a[i][r] * c[j][r] for r in range(b)) / b
            total += (1 - cij) ** 2 if i == j else lam * cij**2
    assert barlow_twins(z1, z2, lam).item() == pytest.approx(total, rel=1e-10)


def test_vicreg__matches_the_reference_conventions():
    z1, z2 = pair(8, 3, seed=4)
    b, d, eps = 8, 3, 1e-4

    def stats(z):
        cols = list(zip(*z.tolist()))
        means = [sum(c) / b for c in cols]
        var = [sum((x - m) ** 2 for x in c) / (b - 1) for c, m in zip(cols, means)]
        variance = sum(max(0.0, 1 - math.sqrt(v + eps)) for v in var) / d
        cov = sum(
            (sum((cols[i][r] - means[i]) * (cols[j][r] - means[j]) for r in range(b)) / (b - 1)) ** 2
            for i in range(d) for j in range(d) if i != j
        ) / d
        return variance, cov

    (v1, c1), (v2, c2) = stats(z1), stats(z2 * 0.1)  # the second branch below the unit-std hinge
    parts = vicreg_parts(z1, z2 * 0.1)
    invariance = sum((x - 0.1 * y) ** 2 for r1, r2 in zip(z1.tolist(), z2.tolist()) for x, y in zip(r1, r2)) / (b * d)
    assert parts["invariance"].item() == pytest.approx(invariance, rel=1e-10)
    assert parts["variance"].item() == pytest.approx((v1 + v2) / 2, rel=1e-10)
    assert parts["covariance"].item() == pytest.approx(c1 + c2, rel=1e-10)


def test_momentum_update__is_the_exponential_moving_average():
    online, target = torch.nn.Linear(3, 2).double(), torch.nn.Linear(3, 2).double()
    before = target.weight.detach().clone()
    momentum_update(online, target, 0.9)
    torch.testing.assert_close(target.weight, 0.9 * before + 0.1 * online.weight.detach())


def ssl_config(term, *extra):
    sets = ["loss.terms.hard.weight=0", f"loss.terms.{term}.weight=1", f"loss.terms.{term}.head_dim=32",
            f"loss.terms.{term}.hidden_dim=32", "optim.tuples_per_step=8", "train.checkpoint_every=1"]
    if term == "moco":
        sets.append("loss.terms.moco.queue_size=24")  # wraps within the run
    return load_config(overrides=TINY_TRAINING + sets + list(extra), generations=1, epochs=1)


def run(config, output, stop_after=None):
    torch.manual_seed(config.seed)
    steps = []

    def on_step():
        steps.append(1)
        if stop_after is not None and len(steps) >= stop_after:
            raise Interrupted()

    return train(config, output, progress=False, log=lambda line: None, on_step=on_step)


@pytest.mark.parametrize("term", ["moco", "byol"])
def test_stateful_terms__resume_exactly_and_stay_out_of_the_model(term, tmp_path, private_cache):
    config = ssl_config(term, f"loss.terms.{term}.self_pairs=true")
    reference = run(config, tmp_path / "reference")
    with pytest.raises(Interrupted):
        run(config, tmp_path / "resumed", stop_after=1)
    resumed = run(config, tmp_path / "resumed")
    assert [g["val"] for g in reference["generations"]] == [g["val"] for g in resumed["generations"]]
    a = torch.load(tmp_path / "reference" / "checkpoints" / "gen0_ep0.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "gen0_ep0.pt", weights_only=False)
    assert set(a["terms"]) == set(b["terms"]) and any(k.startswith(f"{term}.target_network.") for k in a["terms"])
    for key in a["terms"]:
        assert torch.equal(a["terms"][key], b["terms"][key]), key
    if term == "moco":
        assert int(a["terms"]["moco.written"]) == 2 * 16  # 16 tuples, each a pair and a self-pair
    # self-pairs need each query's hardest negative: the miner ran
    assert np.any(np.asarray(a["miner"]["previous_hardest"]) >= 0)
    saved = load_network(tmp_path / "reference" / "best.pt").state_dict()
    assert not any("projection" in key or "target" in key for key in saved)


def test_ssl_only__mines_no_hard_negatives(tmp_path, private_cache):
    run(ssl_config("simclr"), tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "gen0_ep0.pt", weights_only=False)
    assert np.all(np.asarray(state["miner"]["previous_hardest"]) == -1)
    assert any(key.startswith("simclr.projection") for key in state["terms"])
