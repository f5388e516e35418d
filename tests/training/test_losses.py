"""Losses against float64 references written with explicit loops and math.exp / math.log."""
import math

import pytest
import torch

from sfrs.training.losses import (
    HARD_LOSSES,
    hard_loss,
    sare_ind_loss,
    sare_joint_loss,
    select_negative_regions,
    similarity,
    soft_label_stats,
    soft_region_loss,
    teacher_distribution,
    triplet_loss,
)

B, N, M, R, D = 2, 3, 2, 9, 4


def unit(*shape, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator, dtype=torch.float64)
    return x / x.norm(dim=-1, keepdim=True)


@pytest.fixture
def tuple_():
    anchor = unit(B, D, seed=0).requires_grad_()
    positive = unit(B, D, seed=1).requires_grad_()
    negatives = unit(B, N, D, seed=2).requires_grad_()
    return anchor, positive, negatives


@pytest.fixture
def soft_inputs():
    anchor = unit(B, D, seed=3).requires_grad_()
    regions = unit(B, M, R, D, seed=4).requires_grad_()
    teacher = unit(B, M, R, D, seed=5)
    teacher_sims = torch.einsum("bd,bmrd->bmr", unit(B, D, seed=6), teacher)
    mask = torch.tensor([[True, False], [True, True]])  # tuple 0 lacks its second positive
    return anchor, regions, teacher_sims, mask


def dot(u, v):
    return sum(a * b for a, b in zip(u.tolist(), v.tolist()))


def dist(u, v):
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(u.tolist(), v.tolist())))


def naive_soft(anchor, regions, teacher_sims, mask, tau_s, tau_t):
    """Per tuple: list the valid (m, r) entries, softmax both sides, soft cross-entropy."""
    losses = []
    for b in range(anchor.shape[0]):
        entries = [(m, r) for m in range(regions.shape[1]) if mask[b, m] for r in range(regions.shape[2])]
        if not entries:
            continue
        student = [math.exp(dot(anchor[b], regions[b, m, r]) / tau_s) for m, r in entries]
        teacher = [math.exp(float(teacher_sims[b, m, r]) / tau_t) for m, r in entries]
        zs, zt = sum(student), sum(teacher)
        losses.append(-sum(t / zt * math.log(s / zs) for s, t in zip(student, teacher)))
    return sum(losses) / len(losses)


def test_similarity__is_dot_product_over_temperature():
    anchor = unit(B, D, seed=0)
    others = unit(B, N, R, D, seed=1)
    out = similarity(anchor, others, 0.5)
    assert out.shape == (B, N, R)
    for b in range(B):
        for n in range(N):
            for r in range(R):
                assert out[b, n, r].item() == pytest.approx(dot(anchor[b], others[b, n, r]) / 0.5, abs=1e-12)
    with pytest.raises(ValueError, match="temperature"):
        similarity(anchor, others, 0.0)
    with pytest.raises(ValueError, match="others"):
        similarity(anchor, unit(B + 1, D, seed=2), 1.0)


@pytest.mark.parametrize("margin", [0.1, 0.5])
def test_triplet__matches_naive_loop(tuple_, margin):
    anchor, positive, negatives = tuple_
    expected = sum(
        max(0.0, dist(anchor[b], positive[b]) - dist(anchor[b], negatives[b, j]) + margin)
        for b in range(B) for j in range(N)
    ) / (B * N)
    loss = triplet_loss(anchor, positive, negatives, margin=margin)
    # The built-in adds eps = 1e-6 to each coordinate difference.
    assert loss.item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("tau", [0.07, 1.0])
def test_sare_ind__matches_naive_loop(tuple_, tau):
    anchor, positive, negatives = tuple_
    total = 0.0
    for b in range(B):
        sp = math.exp(dot(anchor[b], positive[b]) / tau)
        for j in range(N):
            sn = math.exp(dot(anchor[b], negatives[b, j]) / tau)
            total += -math.log(sp / (sp + sn))
    loss = sare_ind_loss(anchor, positive, negatives, temperature=tau)
    assert loss.item() == pytest.approx(total / (B * N), rel=1e-12)


@pytest.mark.parametrize("tau", [0.07, 1.0])
def test_sare_joint__matches_naive_loop(tuple_, tau):
    anchor, positive, negatives = tuple_
    total = 0.0
    for b in range(B):
        sp = math.exp(dot(anchor[b], positive[b]) / tau)
        sn = sum(math.exp(dot(anchor[b], negatives[b, j]) / tau) for j in range(N))
        total += -math.log(sp / (sp + sn))
    loss = sare_joint_loss(anchor, positive, negatives, temperature=tau)
    assert loss.item() == pytest.approx(total / B, rel=1e-12)


@pytest.mark.parametrize("loss_fn", [triplet_loss, sare_ind_loss, sare_joint_loss])
def test_hard_losses__float32_close_to_float64_and_finite_gradients(tuple_, loss_fn):
    loss64 = loss_fn(*tuple_)
    loss64.backward()
    for tensor in tuple_:
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
    loss32 = loss_fn(*(t.detach().float() for t in tuple_))
    assert loss32.dtype == torch.float32
    assert loss32.item() == pytest.approx(loss64.item(), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name", sorted(HARD_LOSSES))
def test_hard_loss__dispatches_with_the_right_hyper_parameter(tuple_, name):
    out = hard_loss(name, *tuple_, temperature=0.2, margin=0.4)
    direct = {
        "triplet": triplet_loss(*tuple_, margin=0.4),
        "sare_ind": sare_ind_loss(*tuple_, temperature=0.2),
        "sare_joint": sare_joint_loss(*tuple_, temperature=0.2),
    }[name]
    assert out.item() == direct.item()


def test_hard_loss__unknown_name_lists_the_choices(tuple_):
    assert set(HARD_LOSSES) == {"triplet", "sare_ind", "sare_joint"}
    with pytest.raises(ValueError, match="sare_ind.*sare_joint.*triplet"):
        hard_loss("sare", *tuple_, temperature=0.07, margin=0.1)


def test_hard_losses__reject_mismatched_shapes(tuple_):
    anchor, positive, negatives = tuple_
    with pytest.raises(ValueError, match="negatives"):
        sare_ind_loss(anchor, positive, negatives[:, :, :2])
    with pytest.raises(ValueError, match="positive"):
        triplet_loss(anchor, positive[:1], negatives)


def test_select_negative_regions__picks_argmax_region_and_gradient_reaches_it_only():
    anchor = unit(B, D, seed=7).requires_grad_()
    regions = unit(B, N, R, D, seed=8).requires_grad_()
    chosen = select_negative_regions(anchor, regions)
    assert chosen.shape == (B, N, D)
    weights = unit(B, N, D, seed=9)
    (chosen * weights).sum().backward()
    for b in range(B):
        for j in range(N):
            sims = [dot(anchor[b], regions[b, j, r]) for r in range(R)]
            best = max(range(R), key=lambda r: sims[r])
            assert torch.equal(chosen[b, j], regions[b, j, best])
            for r in range(R):
                expected = weights[b, j] if r == best else torch.zeros(D, dtype=torch.float64)
                assert torch.equal(regions.grad[b, j, r], expected)
    # The choice itself is not differentiated.
    assert anchor.grad is None


def test_teacher_distribution__masked_entries_are_zero_and_rows_sum_to_one(soft_inputs):
    _, _, teacher_sims, _ = soft_inputs
    mask = torch.tensor([[True, False], [False, False]])
    probs = teacher_distribution(teacher_sims, mask, 0.05)
    assert probs.shape == (B, M * R)
    assert torch.all(probs[0, R:] == 0) and torch.all(probs[1] == 0)
    assert probs[0].sum().item() == pytest.approx(1.0, abs=1e-12)
    z = sum(math.exp(float(teacher_sims[0, 0, r]) / 0.05) for r in range(R))
    for r in range(R):
        assert probs[0, r].item() == pytest.approx(math.exp(float(teacher_sims[0, 0, r]) / 0.05) / z, rel=1e-12)


@pytest.mark.parametrize("tau_s,tau_t", [(0.07, 0.07), (0.07, 0.05), (1.0, 0.5)])
def test_soft_region_loss__matches_naive_loop_with_a_dropped_positive(soft_inputs, tau_s, tau_t):
    anchor, regions, teacher_sims, mask = soft_inputs
    loss = soft_region_loss(anchor, regions, teacher_sims, mask, tau_s, tau_t)
    expected = naive_soft(anchor, regions, teacher_sims, mask, tau_s, tau_t)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    loss.backward()
    assert torch.isfinite(anchor.grad).all() and torch.isfinite(regions.grad).all()
    assert torch.all(regions.grad[0, 1] == 0)  # the dropped positive gets no gradient


def test_soft_region_loss__invariant_to_masked_entries_values(soft_inputs):
    anchor, regions, teacher_sims, mask = soft_inputs
    loss = soft_region_loss(anchor, regions, teacher_sims, mask)
    (grad_a,) = torch.autograd.grad(loss, anchor)
    other_regions = regions.detach().clone()
    other_regions[0, 1] = unit(R, D, seed=10) * 3.0
    other_sims = teacher_sims.clone()
    other_sims[0, 1] = 100.0
    other_anchor = anchor.detach().clone().requires_grad_()
    other = soft_region_loss(other_anchor, other_regions, other_sims, mask)
    (other_grad_a,) = torch.autograd.grad(other, other_anchor)
    assert other.item() == pytest.approx(loss.item(), rel=1e-14)
    assert torch.allclose(other_grad_a, grad_a, rtol=1e-12, atol=0)


def test_soft_region_loss__tuples_without_positives_are_left_out(soft_inputs):
    anchor, regions, teacher_sims, _ = soft_inputs
    mask = torch.tensor([[False, False], [True, True]])
    loss = soft_region_loss(anchor, regions, teacher_sims, mask, 0.07, 0.06)
    expected = naive_soft(anchor, regions, teacher_sims, mask, 0.07, 0.06)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    loss.backward()
    assert torch.all(regions.grad[0] == 0) and torch.isfinite(anchor.grad).all()


def test_soft_region_loss__no_valid_positive_gives_a_connected_zero(soft_inputs):
    anchor, regions, teacher_sims, _ = soft_inputs
    loss = soft_region_loss(anchor, regions, teacher_sims, torch.zeros(B, M, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.all(anchor.grad == 0) and torch.all(regions.grad == 0)


def test_soft_region_loss__teacher_gets_no_gradient(soft_inputs):
    anchor, regions, teacher_sims, mask = soft_inputs
    teacher_sims = teacher_sims.clone().requires_grad_()
    soft_region_loss(anchor, regions, teacher_sims, mask).backward()
    assert teacher_sims.grad is None


def test_soft_label_stats__match_naive_entropies_and_agreement(soft_inputs):
    anchor, regions, teacher_sims, mask = soft_inputs
    tau_s, tau_t = 0.5, 0.2
    entropies_t, entropies_s, agree, uniform, spreads = [], [], [], [], []
    for b in range(B):
        entries = [(m, r) for m in range(M) if mask[b, m] for r in range(R)]
        s = [math.exp(dot(anchor[b], regions[b, m, r]) / tau_s) for m, r in entries]
        t = [math.exp(float(teacher_sims[b, m, r]) / tau_t) for m, r in entries]
        s = [v / sum(s) for v in s]
        t = [v / sum(t) for v in t]
        entropies_s.append(-sum(v * math.log(v) for v in s))
        entropies_t.append(-sum(v * math.log(v) for v in t))
        agree.append(max(range(len(s)), key=s.__getitem__) == max(range(len(t)), key=t.__getitem__))
        uniform.append(math.log(len(entries)))
        raw = [float(teacher_sims[b, m, r]) for m, r in entries]
        spreads.append(max(raw) - min(raw))
    stats = soft_label_stats(anchor, regions, teacher_sims, mask, tau_s, tau_t)
    assert stats["uniform_entropy"] == pytest.approx(sum(uniform) / B, rel=1e-10)
    assert stats["teacher_spread"] == pytest.approx(sum(spreads) / B, rel=1e-6)
    assert stats["teacher_entropy"] <= stats["uniform_entropy"] + 1e-9
    assert stats["teacher_entropy"] == pytest.approx(sum(entropies_t) / B, rel=1e-10)
    assert stats["student_entropy"] == pytest.approx(sum(entropies_s) / B, rel=1e-10)
    assert stats["agreement"] == pytest.approx(sum(agree) / B)
    assert stats["tuples"] == B
    # A teacher equal to the student agrees everywhere and has the same entropy.
    student_sims = torch.einsum("bd,bmrd->bmr", anchor, regions).detach()
    same = soft_label_stats(anchor, regions, student_sims, mask, tau_s, tau_s)
    assert same["agreement"] == 1.0
    assert same["teacher_entropy"] == pytest.approx(same["student_entropy"], rel=1e-12)


def test_soft_losses__reject_bad_mask(soft_inputs):
    anchor, regions, teacher_sims, mask = soft_inputs
    with pytest.raises(ValueError, match="mask"):
        soft_region_loss(anchor, regions, teacher_sims, mask.float())
    with pytest.raises(ValueError, match="teacher_similarities"):
        soft_region_loss(anchor, regions, teacher_sims[:, :1], mask)
