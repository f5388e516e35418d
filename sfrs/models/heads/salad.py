"""SALAD (Izquierdo and Civera, "Optimal Transport Aggregation for Visual Place
Recognition", CVPR 2024): local features assigned to clusters by optimal transport."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from sfrs.errors import ConfigError
from sfrs.models.heads.regions import check_features, crops


def transport_marginals(clusters: int, locations: int) -> Tuple[float, float]:
    """Masses (per cluster, dustbin) for ``locations`` features of mass 1 each.

    SALAD gives every cluster mass 1 and the dustbin the rest, n - m, which needs n > m.
    For maps with n <= m locations (small crops) each cluster and the dustbin get
    n / (m + 1) instead: the same rule min(1, n / (m + 1)) per cluster, dustbin
    n - m * that, which equals SALAD's whenever n > m and keeps every mass positive.
    """
    per_cluster = min(1.0, locations / (clusters + 1))
    return per_cluster, locations - clusters * per_cluster


def log_sinkhorn(scores: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, iterations: int) -> torch.Tensor:
    """Entropic optimal transport in the log domain (regularisation 1).

    Args:
        scores: (B, M, N) log-kernel S.
        log_a: (M,) log row masses; log_b: (N,) log column masses.
        iterations: alternating updates u = log a - LSE_j(S + v), v = log b - LSE_i(S + u),
            starting from u = v = 0 (rows first, so the columns match exactly).

    Returns:
        (B, M, N) log transport plan S + u_i + v_j.
    """
    u = scores.new_zeros(scores.shape[:2])
    v = scores.new_zeros(scores.shape[0], scores.shape[2])
    for _ in range(iterations):
        u = log_a - torch.logsumexp(scores + v.unsqueeze(1), dim=2)
        v = log_b - torch.logsumexp(scores + u.unsqueeze(2), dim=1)
    return scores + u.unsqueeze(2) + v.unsqueeze(1)


def _mlp_1x1(dim: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(dim, hidden, kernel_size=1), nn.Dropout(dropout), nn.ReLU(), nn.Conv2d(hidden, out, kernel_size=1)
    )


class SALAD(nn.Module):
    """SALAD (Izquierdo and Civera, CVPR 2024), as in the authors' model.

    For the n local features f_i (columns of the map (B, C, h, w)):

    - scores s_ji = score MLP(f_i) for m clusters (1x1 convolutions C -> hidden -> m),
      plus a dustbin row of one learnt score (``dustbin_init``);
    - the (m + 1) x n plan P by ``sinkhorn_iterations`` log-domain Sinkhorn updates
      (:func:`log_sinkhorn`) with column masses 1 and row masses from
      :func:`transport_marginals` (1 per cluster and n - m for the dustbin when n > m);
      the dustbin row is dropped;
    - reduced features g_i = cluster MLP(f_i) (C -> hidden -> ``cluster_dim`` l);
    - V[j] = sum_i P_ji g_i, (m, l), each row L2-normalised, flattened cluster-major;
    - a global token t = token MLP(class token) (C -> hidden -> ``token_dim`` g),
      L2-normalised;
    - descriptor = L2([t, V]), ``token_dim + clusters * cluster_dim`` values.

    ``class_token = "optional"``: ``forward(features, class_token=None)`` takes the
    backbone's class token (B, C) when it has one; without it the global token is made
    from the mean of the local features. ``dropout`` sits in the score and cluster MLPs
    (the paper trains with 0.3; the default 0 keeps training-mode descriptors
    deterministic, so region 0 equals ``forward`` in training too).

    Regions: the whole head on each of the 9 SFRS crops of the map (transport solved per
    crop). Region 0 is ``forward``, with the class token when given; regions 1-8 take
    their global token from the mean of the crop's local features, since the class token
    describes the whole image.

    Attributes:
        dustbin: parameter of shape () (the dustbin score).
        out_dim: ``token_dim + clusters * cluster_dim``.
    """

    class_token = "optional"

    def __init__(
        self,
        dim: int,
        clusters: int = 64,
        cluster_dim: int = 128,
        token_dim: int = 256,
        hidden_dim: int = 512,
        sinkhorn_iterations: int = 3,
        dustbin_init: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("clusters", clusters), ("cluster_dim", cluster_dim), ("token_dim", token_dim),
                            ("hidden_dim", hidden_dim), ("sinkhorn_iterations", sinkhorn_iterations)):
            if value < 1:
                raise ConfigError(f"SALAD option '{name}' must be >= 1, got {value}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"SALAD option 'dropout' must be in [0, 1), got {dropout}")
        self.dim = dim
        self.clusters = clusters
        self.cluster_dim = cluster_dim
        self.sinkhorn_iterations = sinkhorn_iterations
        self.score = _mlp_1x1(dim, hidden_dim, clusters, dropout)
        self.cluster_features = _mlp_1x1(dim, hidden_dim, cluster_dim, dropout)
        self.token_features = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, token_dim))
        self.dustbin = nn.Parameter(torch.tensor(float(dustbin_init)))
        self.out_dim = token_dim + clusters * cluster_dim

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, clusters={self.clusters}, cluster_dim={self.cluster_dim}, "
                f"sinkhorn_iterations={self.sinkhorn_iterations}")

    def assignment(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, m, h*w): the transport plan without its dustbin row."""
        scores = self.score(features).flatten(2)  # (B, m, n)
        # transport in at least float32: under bf16/fp16 autocast the log masses and
        # log-sum-exps would otherwise lose the precision the marginals need
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
        batch, _, n = scores.shape
        augmented = torch.cat([scores, self.dustbin.to(scores.dtype).expand(batch, 1, n)], dim=1)
        per_cluster, dustbin_mass = transport_marginals(self.clusters, n)
        log_a = torch.full((self.clusters + 1,), math.log(per_cluster), dtype=scores.dtype, device=scores.device)
        log_a[-1] = math.log(dustbin_mass)
        log_b = scores.new_zeros(n)
        return log_sinkhorn(augmented, log_a, log_b, self.sinkhorn_iterations)[:, :-1].exp()

    def _describe(self, features: torch.Tensor, class_token: Optional[torch.Tensor]) -> torch.Tensor:
        plan = self.assignment(features)  # (B, m, n)
        reduced = self.cluster_features(features).flatten(2)  # (B, l, n)
        aggregated = F.normalize(torch.bmm(plan, reduced.transpose(1, 2)), p=2, dim=-1)  # (B, m, l)
        token = features.mean(dim=(2, 3)) if class_token is None else class_token
        token = F.normalize(self.token_features(token), p=2, dim=-1)
        return F.normalize(torch.cat([token, aggregated.flatten(1)], dim=1), p=2, dim=-1)

    def _check(self, features: torch.Tensor, class_token: Optional[torch.Tensor]) -> None:
        check_features(features, self.dim, "SALAD")
        if class_token is not None and tuple(class_token.shape) != (features.shape[0], self.dim):
            raise ValueError(
                f"SALAD expects a class token of shape ({features.shape[0]}, {self.dim}), "
                f"got {tuple(class_token.shape)}"
            )

    def forward(self, features: torch.Tensor, class_token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C, h, w) [+ class token (B, C)] -> (B, out_dim), L2-normalised rows."""
        self._check(features, class_token)
        return self._describe(features, class_token)

    def regions(self, features: torch.Tensor, class_token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C, h, w) [+ class token (B, C)] -> (B, 9, out_dim) in the order of
        :data:`REGION_NAMES`; only region 0 uses the class token."""
        self._check(features, class_token)
        parts = crops(features)
        described = [self._describe(parts[0], class_token)]
        described += [self._describe(crop, None) for crop in parts[1:]]
        return torch.stack(described, dim=1)
