"""Training losses of SFRS (Ge et al., ECCV 2020), all on L2-normalised embeddings.

One similarity is shared by every temperature-scaled loss (SARE and the soft region
loss)::

    similarity(a, b, tau) = <a, b> / tau

i.e. cosine similarity over a temperature for L2-normalised descriptors. (The reference
baseline trainer used squared Euclidean distances without a temperature under the same
loss names; we keep a single, named definition.)

Hard losses take an anchor (B, D), its positive (B, D) and N negatives (B, N, D) and
return the mean over tuples (and over negatives where the loss is per negative):

- ``triplet``: margin on (non-squared) L2 distances;
- ``sare_ind``: one 2-way softmax per negative (SARE, Liu et al., ICCV 2019);
- ``sare_joint``: one (1+N)-way softmax (SARE, Liu et al., ICCV 2019).

From generation 1 each negative is first replaced by its region most similar to the
anchor (:func:`select_negative_regions`), and the soft region loss
(:func:`soft_region_loss`) distils the teacher's image-to-region similarity distribution
over the difficult positives' regions into the student.
"""
from __future__ import annotations

import math
from typing import Callable, Dict

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "HARD_LOSSES",
    "hard_loss",
    "sare_ind_loss",
    "sare_joint_loss",
    "select_negative_regions",
    "similarity",
    "soft_label_stats",
    "soft_region_loss",
    "teacher_distribution",
    "triplet_loss",
]


def _check_temperature(name: str, temperature: float) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"{name} must be a positive finite number, got {temperature!r}")


def _check_tuple(anchor: Tensor, positive: Tensor, negatives: Tensor) -> None:
    if anchor.dim() != 2:
        raise ValueError(f"anchor must have shape (B, D), got {tuple(anchor.shape)}")
    batch, dim = anchor.shape
    if positive.shape != anchor.shape:
        raise ValueError(
            f"positive must have the anchor's shape {tuple(anchor.shape)}, got {tuple(positive.shape)}"
        )
    if negatives.dim() != 3 or negatives.shape[0] != batch or negatives.shape[2] != dim:
        raise ValueError(f"negatives must have shape ({batch}, N, {dim}), got {tuple(negatives.shape)}")
    if negatives.shape[1] == 0:
        raise ValueError("at least one negative per tuple is needed")


def similarity(anchor: Tensor, others: Tensor, temperature: float) -> Tensor:
    """Temperature-scaled similarity ``<anchor, other> / temperature`` of each tuple.

    Args:
        anchor: (B, D) L2-normalised descriptors.
        others: (B, ..., D) L2-normalised descriptors compared with their tuple's anchor.
        temperature: tau > 0 (0.07 in SFRS).
    Returns:
        Tensor of shape (B, ...): the dot products divided by tau.
    """
    _check_temperature("temperature", temperature)
    if anchor.dim() != 2:
        raise ValueError(f"anchor must have shape (B, D), got {tuple(anchor.shape)}")
    batch, dim = anchor.shape
    if others.dim() < 2 or others.shape[0] != batch or others.shape[-1] != dim:
        raise ValueError(f"others must have shape ({batch}, ..., {dim}), got {tuple(others.shape)}")
    # One batched matmul rather than a broadcast product: no (B, ..., D) temporary.
    flat = others.reshape(batch, -1, dim)
    dots = torch.bmm(flat, anchor.unsqueeze(-1)).squeeze(-1)
    return dots.reshape(others.shape[:-1]) / temperature


def triplet_loss(anchor: Tensor, positive: Tensor, negatives: Tensor, margin: float = 0.1) -> Tensor:
    """Triplet margin loss on L2 distances, mean over negatives and tuples.

    ``max(0, ||a - p|| - ||a - n_j|| + margin)`` with non-squared distances, through
    ``torch.nn.functional.triplet_margin_loss`` (which adds eps = 1e-6 to each difference).

    Args:
        anchor: (B, D). positive: (B, D). negatives: (B, N, D).
        margin: the margin m.
    Returns:
        Scalar tensor.
    """
    _check_tuple(anchor, positive, negatives)
    batch, count, dim = negatives.shape
    return F.triplet_margin_loss(
        anchor.unsqueeze(1).expand(batch, count, dim).reshape(-1, dim),
        positive.unsqueeze(1).expand(batch, count, dim).reshape(-1, dim),
        negatives.reshape(-1, dim),
        margin=margin,
        p=2,
        reduction="mean",
    )


def sare_ind_loss(anchor: Tensor, positive: Tensor, negatives: Tensor, temperature: float = 0.07) -> Tensor:
    """SARE-ind (Liu et al., ICCV 2019): a 2-way softmax per negative.

    For each negative j, ``-log softmax([s(a, p), s(a, n_j)])[0]`` with
    s = :func:`similarity` at ``temperature``; mean over negatives and tuples.

    Args:
        anchor: (B, D). positive: (B, D). negatives: (B, N, D); all L2-normalised.
        temperature: tau.
    Returns:
        Scalar tensor.
    """
    _check_tuple(anchor, positive, negatives)
    s_pos = similarity(anchor, positive.unsqueeze(1), temperature)  # (B, 1)
    s_neg = similarity(anchor, negatives, temperature)  # (B, N)
    # -log(e^p / (e^p + e^n)) = log(1 + e^(n - p)), computed stably.
    return F.softplus(s_neg - s_pos).mean()


def sare_joint_loss(anchor: Tensor, positive: Tensor, negatives: Tensor, temperature: float = 0.07) -> Tensor:
    """SARE-joint (Liu et al., ICCV 2019): one (1+N)-way softmax per tuple.

    ``-log softmax([s(a, p), s(a, n_1), ..., s(a, n_N)])[0]`` with s = :func:`similarity`;
    mean over tuples.

    Args:
        anchor: (B, D). positive: (B, D). negatives: (B, N, D); all L2-normalised.
        temperature: tau.
    Returns:
        Scalar tensor.
    """
    _check_tuple(anchor, positive, negatives)
    logits = torch.cat(
        [similarity(anchor, positive.unsqueeze(1), temperature), similarity(anchor, negatives, temperature)],
        dim=1,
    )  # (B, 1 + N); the positive is class 0
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


HARD_LOSSES: Dict[str, Callable[..., Tensor]] = {
    "triplet": triplet_loss,
    "sare_ind": sare_ind_loss,
    "sare_joint": sare_joint_loss,
}
# The one hyper-parameter each hard loss reads; the other is ignored by that loss.
_HARD_LOSS_PARAMETER: Dict[str, str] = {"triplet": "margin", "sare_ind": "temperature", "sare_joint": "temperature"}


def hard_loss(
    name: str,
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor,
    *,
    temperature: float,
    margin: float,
) -> Tensor:
    """The hard loss called ``name`` (a key of :data:`HARD_LOSSES`).

    Args:
        name: "triplet", "sare_ind" or "sare_joint".
        anchor: (B, D). positive: (B, D). negatives: (B, N, D).
        temperature: tau of the SARE losses (unused by the triplet loss).
        margin: margin of the triplet loss (unused by the SARE losses).
    Returns:
        Scalar tensor.
    Raises:
        ValueError: for an unknown name.
    """
    if name not in HARD_LOSSES:
        raise ValueError(f"unknown hard loss {name!r}; choose one of {', '.join(sorted(HARD_LOSSES))}")
    parameter = _HARD_LOSS_PARAMETER[name]
    value = margin if parameter == "margin" else temperature
    return HARD_LOSSES[name](anchor, positive, negatives, **{parameter: value})


def select_negative_regions(anchor: Tensor, negative_regions: Tensor) -> Tensor:
    """Each negative's region most similar to the anchor (SFRS, from generation 1).

    Args:
        anchor: (B, D) global descriptors of the queries.
        negative_regions: (B, N, R, D) region descriptors of the negatives (R = 9).
    Returns:
        Tensor of shape (B, N, D): for every negative the region with the largest dot
        product with its anchor (first one on ties). The choice is not differentiated;
        gradients reach the chosen region only (and not the anchor through the choice).
    """
    if negative_regions.dim() != 4 or anchor.dim() != 2 or negative_regions.shape[0] != anchor.shape[0] \
            or negative_regions.shape[-1] != anchor.shape[-1]:
        raise ValueError(
            f"expected anchor (B, D) and negative_regions (B, N, R, D), got {tuple(anchor.shape)} "
            f"and {tuple(negative_regions.shape)}"
        )
    batch, count, regions, dim = negative_regions.shape
    with torch.no_grad():
        # The temperature does not change the argmax.
        best = similarity(anchor, negative_regions, 1.0).argmax(dim=-1)  # (B, N)
    index = best.view(batch, count, 1, 1).expand(batch, count, 1, dim)
    return negative_regions.gather(2, index).squeeze(2)


def _check_soft_inputs(
    anchor: Tensor, positive_regions: Tensor, teacher_similarities: Tensor, mask: Tensor
) -> None:
    if anchor.dim() != 2 or positive_regions.dim() != 4 or positive_regions.shape[0] != anchor.shape[0] \
            or positive_regions.shape[-1] != anchor.shape[-1]:
        raise ValueError(
            f"expected anchor (B, D) and positive_regions (B, M, R, D), got {tuple(anchor.shape)} "
            f"and {tuple(positive_regions.shape)}"
        )
    if teacher_similarities.shape != positive_regions.shape[:3]:
        raise ValueError(
            f"teacher_similarities must have shape {tuple(positive_regions.shape[:3])} (B, M, R), "
            f"got {tuple(teacher_similarities.shape)}"
        )
    if mask.shape != positive_regions.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a bool tensor of shape {tuple(positive_regions.shape[:2])} (B, M), "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )


def _entry_mask(mask: Tensor, regions: int) -> Tensor:
    """(B, M) valid positives -> (B, M*R) valid entries, positive-major like ``flatten(1)``."""
    return mask.unsqueeze(-1).expand(*mask.shape, regions).flatten(1)


def teacher_distribution(teacher_similarities: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """Teacher soft labels: softmax of cosine similarities / tau over valid entries.

    Args:
        teacher_similarities: (B, M, R) raw cosine similarities of the anchor (global) with
            the regions of its M difficult positives, as computed by the teacher.
        mask: (B, M) bool, True for a valid (non-padding) difficult positive.
        temperature: the teacher's tau (schedule [0.07, 0.07, 0.06, 0.05] in SFRS).
    Returns:
        Tensor of shape (B, M*R), positive-major (entry m*R + r). Rows sum to 1 over the
        valid entries and are 0 at masked ones; a tuple without any valid positive is an
        all-zero row.
    """
    _check_temperature("temperature", temperature)
    if teacher_similarities.dim() != 3 or mask.shape != teacher_similarities.shape[:2]:
        raise ValueError(
            f"expected teacher_similarities (B, M, R) and mask (B, M), got "
            f"{tuple(teacher_similarities.shape)} and {tuple(mask.shape)}"
        )
    valid = _entry_mask(mask, teacher_similarities.shape[-1])
    logits = (teacher_similarities / temperature).flatten(1).masked_fill(~valid, float("-inf"))
    # An all-masked row is NaN after the softmax; where() turns it into zeros.
    return torch.where(valid, logits.softmax(dim=-1), torch.zeros_like(logits))


def soft_region_loss(
    anchor: Tensor,
    positive_regions: Tensor,
    teacher_similarities: Tensor,
    mask: Tensor,
    student_temperature: float = 0.07,
    teacher_temperature: float = 0.07,
) -> Tensor:
    """Soft region cross-entropy of SFRS (Ge et al., ECCV 2020).

    Per tuple, over all valid difficult positives x regions (up to M*R entries; masked
    positives are excluded from both distributions):
    ``-sum_e p_t[e] log p_s[e]`` with p_s = softmax of :func:`similarity` (anchor, region)
    at ``student_temperature`` and p_t = :func:`teacher_distribution` at
    ``teacher_temperature``. The teacher's labels are targets: no gradient flows into
    ``teacher_similarities``.

    Args:
        anchor: (B, D) student global descriptors of the queries.
        positive_regions: (B, M, R, D) student region descriptors of the difficult
            positives. Masked entries must be finite (e.g. zeros); their values affect
            neither the loss nor the gradients.
        teacher_similarities: (B, M, R) the teacher's raw cosine similarities.
        mask: (B, M) bool, True for a valid difficult positive.
        student_temperature, teacher_temperature: the two taus.
    Returns:
        Scalar tensor: the mean over tuples with at least one valid positive. When no
        tuple has one, a zero still connected to the inputs' graph (so every parameter
        gets a (zero) gradient, as distributed data parallel expects).
    """
    _check_soft_inputs(anchor, positive_regions, teacher_similarities, mask)
    logits = similarity(anchor, positive_regions, student_temperature).flatten(1)  # (B, M*R)
    rows = mask.any(dim=1)
    if not bool(rows.any()):
        return (logits * 0).sum()
    # Dropping empty tuples first keeps every softmax below over >= 1 entry (no NaN).
    valid = _entry_mask(mask[rows], positive_regions.shape[2])
    log_student = logits[rows].masked_fill(~valid, float("-inf")).log_softmax(dim=-1)
    target = teacher_distribution(teacher_similarities[rows].detach(), mask[rows], teacher_temperature)
    # 0 * -inf at masked entries is NaN: select instead of multiplying there.
    per_entry = torch.where(valid, target * log_student, torch.zeros_like(log_student))
    return -per_entry.sum(dim=1).mean()


@torch.no_grad()
def soft_label_stats(
    anchor: Tensor,
    positive_regions: Tensor,
    teacher_similarities: Tensor,
    mask: Tensor,
    student_temperature: float = 0.07,
    teacher_temperature: float = 0.07,
) -> Dict[str, float]:
    """Diagnostics of the soft labels for logging (no gradient).

    Args: as :func:`soft_region_loss`.
    Returns:
        ``teacher_entropy`` and ``student_entropy``: mean entropy (nats) of the two
        distributions over the valid entries; ``uniform_entropy``: mean log of the number
        of valid entries, the entropy of labels that say nothing (the teacher's entropy
        is read against it); ``teacher_spread``: mean over tuples of the range (max - min)
        of the teacher's cosine similarities over the valid entries: divided by the
        teacher temperature it is the spread of the label logits, so a small spread is why
        labels come out near-uniform; ``agreement``: fraction of tuples whose student
        argmax entry equals the teacher's; ``tuples``: number of tuples with at least one
        valid positive (the averages run over these; NaN when there are none).
    """
    _check_soft_inputs(anchor, positive_regions, teacher_similarities, mask)
    rows = mask.any(dim=1)
    count = int(rows.sum())
    if count == 0:
        nan = float("nan")
        return {"teacher_entropy": nan, "student_entropy": nan, "uniform_entropy": nan, "teacher_spread": nan,
                "agreement": nan, "tuples": 0.0}
    mask = mask[rows]
    valid = _entry_mask(mask, positive_regions.shape[2])
    logits = similarity(anchor[rows], positive_regions[rows], student_temperature).flatten(1)
    log_student = logits.masked_fill(~valid, float("-inf")).log_softmax(dim=-1)
    student = log_student.exp()
    teacher = teacher_distribution(teacher_similarities[rows], mask, teacher_temperature)

    def entropy(p: Tensor) -> Tensor:
        # 0 log 0 = 0 (masked entries and underflowed probabilities).
        return -torch.where(p > 0, p * p.clamp_min(torch.finfo(p.dtype).tiny).log(), torch.zeros_like(p)).sum(1)

    agree = student.argmax(dim=1) == teacher.argmax(dim=1)
    sims = teacher_similarities[rows].flatten(1)
    spread = sims.masked_fill(~valid, float("-inf")).amax(1) - sims.masked_fill(~valid, float("inf")).amin(1)
    return {
        "teacher_entropy": float(entropy(teacher).mean()),
        "student_entropy": float(entropy(student).mean()),
        "uniform_entropy": float(valid.sum(1).double().log().mean()),
        "teacher_spread": float(spread.mean()),
        "agreement": float(agree.double().mean()),
        "tuples": float(count),
    }
