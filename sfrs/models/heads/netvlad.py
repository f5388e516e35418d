"""Aggregation heads: local feature maps (B, C, h, w) -> global descriptors (B, D).

Every head built by :func:`build_head` has the same contract:

- ``forward(features)``: (B, C, h, w) -> (B, ``out_dim``), rows L2-normalised;
- ``regions(features)``: (B, C, h, w) -> (B, 9, ``out_dim``), the descriptors of the
  9 regions of SFRS (Ge et al., ECCV 2020) in the order
  ``[global, top, bottom, left, right, TL, TR, BL, BR]``, each row L2-normalised.
  Regions are cut on the *feature map*: rows ``[:h//2]`` / ``[h//2:]`` and columns
  ``[:w//2]`` / ``[w//2:]`` (h >= 2 and w >= 2 required). Per-quarter statistics are
  computed once; halves and the global region are sums of quarters, so region 0 equals
  ``forward`` (up to floating-point summation order).

Heads: ``netvlad`` (Arandjelovic et al., CVPR 2016) and ``gem`` (generalised-mean
pooling, Radenovic et al., TPAMI 2019).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple, Type

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sfrs.errors import ConfigError

# Region order: indices into the 4 quarters [TL, TR, BL, BR] summed for each region.
REGION_NAMES: Tuple[str, ...] = ("global", "top", "bottom", "left", "right", "TL", "TR", "BL", "BR")
_REGION_QUARTERS: Tuple[Tuple[int, ...], ...] = (
    (0, 1, 2, 3), (0, 1), (2, 3), (0, 2), (1, 3), (0,), (1,), (2,), (3,),
)


def _region_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(9, 4) 0/1 matrix M with region r = sum_q M[r, q] * quarter q."""
    matrix = torch.zeros(len(_REGION_QUARTERS), 4, device=device, dtype=dtype)
    for r, quarters in enumerate(_REGION_QUARTERS):
        matrix[r, list(quarters)] = 1
    return matrix


def _quarters(features: torch.Tensor) -> List[torch.Tensor]:
    """Split (B, C, h, w) into its 4 quarters [TL, TR, BL, BR] at row h//2, column w//2."""
    h, w = features.shape[-2:]
    if h < 2 or w < 2:
        raise ValueError(
            f"regions need a feature map of at least 2x2 locations, got {h}x{w}; "
            "use larger input images"
        )
    top, left = h // 2, w // 2
    return [
        features[..., :top, :left], features[..., :top, left:],
        features[..., top:, :left], features[..., top:, left:],
    ]


def _check_features(features: torch.Tensor, dim: int, head: str) -> None:
    if features.dim() != 4 or features.shape[1] != dim:
        raise ValueError(
            f"{head} expects features of shape (B, {dim}, h, w), got {tuple(features.shape)}"
        )


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
        _check_features(features, self.dim, "NetVLAD")
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
            [self._vlad_sums(xq, aq) for xq, aq in zip(_quarters(x), _quarters(soft_assign))],
            dim=1,
        )  # (B, 4, K, D)
        matrix = _region_matrix(features.device, quarter_sums.dtype)
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


class GeM(nn.Module):
    """Generalised-mean pooling (Radenovic et al., TPAMI 2019) with optional FC, then L2.

    y_c = (mean_i clamp(x_ic, eps)^p)^(1/p) with learnable p; then ``fc`` (C -> fc_dim)
    if ``fc_dim`` is given; then L2 normalisation.

    Attributes:
        p: parameter of shape (1,).
        fc: ``nn.Linear(dim, fc_dim)`` or None.
        out_dim: ``fc_dim`` or ``dim``.
    """

    def __init__(self, dim: int, p: float = 3.0, eps: float = 1e-6, fc_dim: Optional[int] = None) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.p = nn.Parameter(torch.full((1,), float(p)))
        self.fc = nn.Linear(dim, fc_dim) if fc_dim is not None else None
        self.out_dim = fc_dim if fc_dim is not None else dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}, p={self.p.item():.4g}, eps={self.eps}"

    def _powered(self, features: torch.Tensor) -> torch.Tensor:
        _check_features(features, self.dim, "GeM")
        return features.clamp(min=self.eps).pow(self.p)

    def _finish(self, means: torch.Tensor) -> torch.Tensor:
        pooled = means.pow(1.0 / self.p)
        if self.fc is not None:
            pooled = self.fc(pooled)
        return F.normalize(pooled, p=2, dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, out_dim), L2-normalised rows."""
        return self._finish(self._powered(features).mean(dim=(2, 3)))

    def regions(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 9, out_dim) in the order of :data:`REGION_NAMES`."""
        quarters = _quarters(self._powered(features))
        sums = torch.stack([q.sum(dim=(2, 3)) for q in quarters], dim=1)  # (B, 4, C)
        counts = torch.tensor(
            [q.shape[-2] * q.shape[-1] for q in quarters], device=sums.device, dtype=sums.dtype
        )
        matrix = _region_matrix(sums.device, sums.dtype)
        means = torch.einsum("rq,bqc->brc", matrix, sums) / (matrix @ counts)[None, :, None]
        return self._finish(means)


_HEADS: Dict[str, Type[nn.Module]] = {"netvlad": NetVLAD, "gem": GeM}


def list_heads() -> List[str]:
    """Names accepted by :func:`build_head`."""
    return list(_HEADS)


def build_head(name: str, dim: int, **kwargs) -> nn.Module:
    """Build a head for backbone features with ``dim`` channels.

    ``netvlad`` takes ``clusters``, ``normalize_input``; ``gem`` takes ``p``, ``eps``,
    ``fc_dim``. Defaults are those of the constructors.
    """
    if name not in _HEADS:
        raise ConfigError(f"unknown head '{name}'; choose one of {', '.join(_HEADS)}")
    try:
        return _HEADS[name](dim=dim, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"head '{name}': {exc}") from exc
