"""Self-supervised pair losses on row-aligned embeddings z1 (B, E), z2 (B, E) (VG-SSL,
Xiao et al.; definitions in each docstring). Pure functions: projection heads, momentum
encoders and queues live in the terms (:mod:`sfrs.training.terms.ssl`).

Written here rather than taken from a library: they are a few lines each, every one is
tested against its formula in float64, and the conventions (normalisation, symmetry,
variance estimator) are stated instead of inherited.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's NT-Xent (Chen et al., ICML 2020): the 2B L2-normalised embeddings, cosine
    logits / tau without the self-similarity, each row's positive its pair; mean
    cross-entropy over the 2B rows."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    count = z1.shape[0]
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(2 * count, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(count, 2 * count), torch.arange(count)]).to(z.device)
    return F.cross_entropy(logits, target)


def moco_infonce(query: Tensor, key: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """MoCo (He et al., CVPR 2020): logits [q.k, q.queue] / tau with L2-normalised q (B, E)
    and k (B, E) and the queue (K, E) of earlier keys; label 0; mean cross-entropy."""
    q, k = F.normalize(query, dim=1), F.normalize(key, dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    negative = q @ queue.T
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def cosine_regression(prediction: Tensor, target: Tensor) -> Tensor:
    """BYOL's 2 - 2 cos(p, t) (= ||p/|p| - t/|t|||^2), mean over rows; ``target`` is
    detached (the stop-gradient)."""
    return (2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=1)).mean()


def barlow_twins(z1: Tensor, z2: Tensor, off_diagonal_weight: float, eps: float = 1e-4) -> Tensor:
    """Barlow Twins (Zbontar et al., ICML 2021): each dimension standardised over the
    batch, (z - mean) / sqrt(var + eps) with the biased (batch-norm) variance;
    C = z1~^T z2~ / B; sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2."""
    count = z1.shape[0]

    def standardise(z: Tensor) -> Tensor:
        return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)

    c = standardise(z1).T @ standardise(z2) / count
    diagonal = torch.diagonal(c)
    return (1 - diagonal).pow(2).sum() + off_diagonal_weight * (c.pow(2).sum() - diagonal.pow(2).sum())


def vicreg_parts(z1: Tensor, z2: Tensor, eps: float = 1e-4) -> Dict[str, Tensor]:
    """VICReg's three terms (Bardes et al., ICLR 2022), conventions of its reference code:
    invariance = MSE(z1, z2) (mean over all entries); variance = the mean over dimensions
    of ReLU(1 - sqrt(var + eps)), averaged over the two branches (unbiased variance);
    covariance = sum of squared off-diagonal entries of each branch's covariance
    (z - mean)^T (z - mean) / (B - 1), divided by E, summed over the two branches."""
    count, dim = z1.shape

    def variance(z: Tensor) -> Tensor:
        return F.relu(1 - torch.sqrt(z.var(dim=0) + eps)).mean()

    def covariance(z: Tensor) -> Tensor:
        centred = z - z.mean(dim=0)
        cov = centred.T @ centred / (count - 1)
        return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / dim

    return {
        "invariance": F.mse_loss(z1, z2),
        "variance": (variance(z1) + variance(z2)) / 2,
        "covariance": covariance(z1) + covariance(z2),
    }


@torch.no_grad()
def embedding_stats(z1: Tensor, z2: Tensor) -> Dict[str, float]:
    """Diagnostics of L2-normalised pair embeddings: ``alignment`` (mean squared distance
    of pairs, Wang & Isola 2020), ``uniformity`` (log mean exp(-2 d^2) over distinct
    rows), ``std`` (mean per-dimension standard deviation; collapse drives it to 0, a
    uniform spread gives ~1/sqrt(E))."""
    a, b = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    stats = {"alignment": float((a - b).pow(2).sum(dim=1).mean()), "std": float(a.std(dim=0).mean())}
    if len(a) > 1:
        squared = torch.pdist(a).pow(2)
        stats["uniformity"] = float(torch.log(torch.exp(-2 * squared).mean()))
    return stats
