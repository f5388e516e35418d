"""M-step objective of EM-CVGL (Li et al., 2024): a symmetric InfoNCE on the pseudo-labelled
rows and the AIC reconstruction terms that keep the adapted features close to the
frozen ones.

Both take embeddings and similarities; weights are applied by the caller.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sfrs.adaptation.pseudo_labels import PseudoLabels


def symmetric_info_nce(similarity: Tensor, labels: PseudoLabels, scale: Tensor, label_smoothing: float = 0.1) -> Tensor:
    """InfoNCE over the pseudo-labelled rows of both directions, every column a candidate.

    ``L_AB = CE(scale * S[rows_a], labels_a)`` over the view-A rows (all B columns stay as
    negatives), ``L_BA = CE(scale * S^T[rows_b], labels_b)`` likewise; the result is their
    mean. Cross-entropy with label smoothing ``eps`` over C candidates:
    ``-(1 - eps) log p_label - (eps / C) sum_c log p_c``, averaged over rows.

    Args:
        similarity: (A, B) cosine similarities (with gradient).
        labels: the E-step's :class:`PseudoLabels` of this matrix.
        scale: scalar inverse temperature (the adapter's learnable ``exp(logit_scale)``).
    Returns:
        Scalar; a direction without labels is left out of the mean, and with none at all
        the result is 0 (still connected to the graph, so a step without pseudo-labels
        trains the reconstruction terms only).
    """
    terms = []
    if labels.rows_a.numel():
        terms.append(F.cross_entropy(scale * similarity[labels.rows_a], labels.labels_a, label_smoothing=label_smoothing))
    if labels.rows_b.numel():
        terms.append(F.cross_entropy(scale * similarity.t()[labels.rows_b], labels.labels_b, label_smoothing=label_smoothing))
    if not terms:
        return (similarity.sum() + scale) * 0.0
    return torch.stack(terms).mean()


def reconstruction_l1(reconstructed: Tensor, frozen: Tensor) -> Tensor:
    """AIC term: mean absolute difference between ``L2norm(decoder(encoder(x)))`` (B, D) and
    the frozen feature ``x`` (B, D), over all B x D elements (``torch.nn.L1Loss``)."""
    if reconstructed.shape != frozen.shape:
        raise ValueError(f"reconstruction {tuple(reconstructed.shape)} and frozen features {tuple(frozen.shape)} differ")
    return (reconstructed - frozen).abs().mean()
