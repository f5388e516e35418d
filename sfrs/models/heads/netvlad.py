"""NetVLAD aggregation (Arandjelovic et al., CVPR 2016) and its k-means initialisation."""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sfrs.errors import ConfigError
from sfrs.models.heads.regions import check_features, quarters, region_matrix


class NetVLAD(nn.Module):
    """NetVLAD aggregation (Arandjelovic et al., CVPR 2016), as used by SFRS.

    Local descriptors x_i (L2-normalised per location if ``normalize_input``) are softly
    assigned to K clusters, a_ik = softmax_k(w_k . x_i) with ``assign`` a 1x1 convolution
    without bias, and aggregated as V[k] = sum_i a_ik (x_i - c_k), computed as
    ``A^T X - c_k * sum_i a_ik`` (one batched matmul; the (B, K, D, h*w) residual tensor
    is never materialised). V is intra-normalised (L2 per cluster), flattened
    cluster-major to K*D and L2-normalised.

    Attributes:
        centroids: parameter of shape (K, D).
        assign: ``nn.Conv2d(D, K, 1, bias=False)``.
        out_dim: K * D.
    """

    def __init__(self, clusters: int = 64, dim: int = 512, normalize_input: bool = True) -> None:
        super().__init__()
        if clusters < 1 or dim < 1:
            raise ConfigError(f"NetVLAD needs clusters >= 1 and dim >= 1, got {clusters} and {dim}")
        self.clusters = clusters
        self.dim = dim
        self.normalize_input = normalize_input
        self.out_dim = clusters * dim
        self.centroids = nn.Parameter(torch.rand(clusters, dim))
        self.assign = nn.Conv2d(dim, clusters, kernel_size=1, bias=False)

    def extra_repr(self) -> str:
        return f"clusters={self.clusters}, dim={self.dim}, normalize_input={self.normalize_input}"

    def _local(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Normalised descriptors (B, D, h, w) and soft assignment (B, K, h, w)."""
        check_features(features, self.dim, "NetVLAD")
        x = F.normalize(features, p=2, dim=1) if self.normalize_input else features
        soft_assign = F.softmax(self.assign(x), dim=1)
        return x, soft_assign

    def _vlad_sums(self, x: torch.Tensor, soft_assign: torch.Tensor) -> torch.Tensor:
        """Un-normalised VLAD sums (B, K, D) of descriptors (B, D, ...) with assignment (B, K, ...)."""
        a = soft_assign.flatten(2)  # (B, K, N)
        xs = x.flatten(2)  # (B, D, N)
        weighted = torch.bmm(a, xs.transpose(1, 2))  # (B, K, D) = A^T X
        return weighted - self.centroids.unsqueeze(0) * a.sum(dim=2, keepdim=True)

    @staticmethod
    def _normalise(vlad: torch.Tensor) -> torch.Tensor:
        """(..., K, D) -> (..., K*D): intra-normalisation, flatten, global L2."""
        vlad = F.normalize(vlad, p=2, dim=-1)
        return F.normalize(vlad.flatten(-2), p=2, dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B, K*D), L2-normalised rows."""
        x, soft_assign = self._local(features)
        return self._normalise(self._vlad_sums(x, soft_assign))

    def regions(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B, 9, K*D) in the order of :data:`REGION_NAMES`."""
        x, soft_assign = self._local(features)
        quarter_sums = torch.stack(
            [self._vlad_sums(xq, aq) for xq, aq in zip(quarters(x), quarters(soft_assign))],
            dim=1,
        )  # (B, 4, K, D)
        matrix = region_matrix(features.device, quarter_sums.dtype)
        region_sums = torch.einsum("rq,bqkd->brkd", matrix, quarter_sums)  # (B, 9, K, D)
        return self._normalise(region_sums)

    @torch.no_grad()
    def init_from_descriptors(
        self, descriptors: np.ndarray, seed: int = 0, niter: int = 100, **kmeans_options
    ) -> float:
        """Initialise from local descriptors with k-means (faiss, CPU).

        Centroids c_k are the k-means centres; the assignment weights are
        alpha * c_k / |c_k| with alpha = -log(0.01) / mean(d1 - d2), where d1, d2 are each
        descriptor's two largest dot products with the normalised centres (NetVLAD
        reference initialisation).

        Args:
            descriptors: float array (N, D), L2-normalised rows, N >= K.
            seed: k-means seed.
            niter: k-means iterations.
            **kmeans_options: passed to ``faiss.Kmeans`` (e.g. ``nredo``). By default every
                descriptor is used (no faiss sub-sampling).

        Returns:
            alpha.
        """
        import faiss

        descriptors = np.ascontiguousarray(descriptors, dtype=np.float32)
        if descriptors.ndim != 2 or descriptors.shape[1] != self.dim:
            raise ValueError(
                f"NetVLAD init expects descriptors of shape (N, {self.dim}), got {descriptors.shape}"
            )
        if descriptors.shape[0] < max(self.clusters, 2):
            raise ValueError(
                f"NetVLAD init needs at least {max(self.clusters, 2)} descriptors for "
                f"{self.clusters} clusters, got {descriptors.shape[0]}"
            )
        options = {"max_points_per_centroid": math.ceil(descriptors.shape[0] / self.clusters) + 1}
        options.update(kmeans_options)
        kmeans = faiss.Kmeans(self.dim, self.clusters, niter=niter, seed=seed, verbose=False, **options)
        kmeans.train(descriptors)
        centroids = kmeans.centroids.astype(np.float64)
        normalised = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
        alpha = netvlad_alpha(descriptors, normalised)
        self.centroids.copy_(torch.from_numpy(centroids))
        weight = torch.from_numpy(alpha * normalised)[:, :, None, None]
        self.assign.weight.copy_(weight)
        return alpha


def netvlad_alpha(descriptors: np.ndarray, normalised_centroids: np.ndarray) -> float:
    """alpha = -log(0.01) / mean(d1 - d2) over descriptors (N, D) and centres (K, D), K >= 2."""
    if normalised_centroids.shape[0] < 2:
        return 1.0
    dots = descriptors.astype(np.float64) @ normalised_centroids.T  # (N, K)
    top2 = -np.partition(-dots, 1, axis=1)[:, :2]
    gap = float(np.mean(top2[:, 0] - top2[:, 1]))
    if not gap > 0:
        raise ValueError("NetVLAD init: descriptors are equidistant from their two nearest centroids")
    return float(-np.log(0.01) / gap)
