"""E-step of EM-CVGL: hard pseudo-labels between the two views from mutual nearest
neighbours of the adapted features (Li et al., 2024, "EM-based pseudo-labelling").

Given the cosine similarities S (A, B) between view-A rows (drone images, queries) and
view-B rows (satellite tiles, database images), of one batch (:func:`pseudo_labels`,
the reference) or of the whole target set (:func:`whole_set_pseudo_labels`, faiss):

1. every A row's best B column and every B column's best A row (first maximum on ties);
2. a pair is mutual when each is the other's best; when *more than* ``min_mutual`` mutual
   pairs exist only mutual rows are candidates, otherwise every row is (the reference's
   fallback for the first steps, when the views barely match);
3. a candidate keeps its argmax as a hard label when its best score exceeds ``threshold``.

The A -> B and B -> A labels are returned separately: the M-step scores both directions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class PseudoLabels:
    """Hard pseudo-labels of one batch (indices into the batch, on the similarity's device).

    Attributes:
        rows_a: (Ka,) int64 view-A rows that received a label; labels_a: (Ka,) their B column.
        rows_b: (Kb,) int64 view-B rows that received a label; labels_b: (Kb,) their A row.
        mutual: number of mutual nearest-neighbour pairs in the batch.
        mutual_only: True when only mutual rows were candidates (``mutual > min_mutual``).
    """

    rows_a: Tensor
    labels_a: Tensor
    rows_b: Tensor
    labels_b: Tensor
    mutual: int
    mutual_only: bool

    @property
    def count(self) -> int:
        """Labels in both directions (a mutual pair counts twice: once per direction)."""
        return int(self.rows_a.numel() + self.rows_b.numel())

    def precision(
        self, batch_a: Sequence[int], batch_b: Sequence[int], is_positive
    ) -> Optional[float]:
        """Fraction of labels that pair true matches, or None without labels.

        Args:
            batch_a / batch_b: global row index of each batch row of view A / view B.
            is_positive: (global A rows (K,), global B rows (K,)) -> (K,) bool array.
        """
        if self.count == 0:
            return None
        batch_a = np.asarray(batch_a)
        batch_b = np.asarray(batch_b)
        rows_a, labels_a = self.rows_a.cpu().numpy(), self.labels_a.cpu().numpy()
        rows_b, labels_b = self.rows_b.cpu().numpy(), self.labels_b.cpu().numpy()
        global_a = np.concatenate([batch_a[rows_a], batch_a[labels_b]])
        global_b = np.concatenate([batch_b[labels_a], batch_b[rows_b]])
        return float(np.mean(is_positive(global_a, global_b)))


@torch.no_grad()
def pseudo_labels(similarity: Tensor, threshold: float = 0.1, min_mutual: int = 10) -> PseudoLabels:
    """Mutual-nearest-neighbour pseudo-labels of a (A, B) cosine similarity matrix.

    Args:
        similarity: (A, B) similarities of L2-normalised adapted features (not modified).
        threshold: a row's best similarity must be strictly greater to keep its label.
        min_mutual: mutual pairs restrict the candidates only when strictly more exist.
    Returns:
        :class:`PseudoLabels`.
    """
    if similarity.ndim != 2 or 0 in similarity.shape:
        raise ValueError(f"similarity must be a non-empty (A, B) matrix, got shape {tuple(similarity.shape)}")
    score_a, best_b = similarity.max(dim=1)  # per A row: its nearest B column
    score_b, best_a = similarity.max(dim=0)  # per B column: its nearest A row
    rows = torch.arange(similarity.shape[0], device=similarity.device)
    columns = torch.arange(similarity.shape[1], device=similarity.device)
    mutual_a = best_a[best_b] == rows
    mutual_b = best_b[best_a] == columns
    mutual = int(mutual_a.sum())
    mutual_only = mutual > min_mutual
    keep_a = score_a > threshold
    keep_b = score_b > threshold
    if mutual_only:
        keep_a &= mutual_a
        keep_b &= mutual_b
    rows_a = torch.nonzero(keep_a).flatten()
    rows_b = torch.nonzero(keep_b).flatten()
    return PseudoLabels(rows_a, best_b[rows_a], rows_b, best_a[rows_b], mutual, mutual_only)


def whole_set_pseudo_labels(
    features_a: np.ndarray, features_b: np.ndarray, threshold: float = 0.1, min_mutual: int = 10
) -> PseudoLabels:
    """The same rule over every row of both views: nearest neighbours by an exact faiss
    search in each direction (no N_A x N_B matrix is held), indices global.

    Inside a batch a view-B row's nearest A row is only the nearest of the batch's A rows,
    so a pair can be "mutual" in the batch while a better A row sits outside it; over the
    whole set mutuality is the strict test the method means.

    Args:
        features_a / features_b: (N_A, D) / (N_B, D) L2-normalised float32 descriptors.
        threshold, min_mutual: as :func:`pseudo_labels` (``min_mutual`` counts whole-set pairs).
    Returns:
        :class:`PseudoLabels` whose rows and labels index ``features_a`` / ``features_b`` (CPU).
    """
    from sfrs.retrieval import search

    if features_a.ndim != 2 or features_b.ndim != 2 or 0 in features_a.shape or 0 in features_b.shape:
        raise ValueError(f"features must be non-empty matrices, got {features_a.shape} and {features_b.shape}")
    # squared L2 of unit rows: ||a - b||^2 = 2 - 2 cos
    distance_a, best_b = (x[:, 0] for x in search(features_a, features_b, 1))
    distance_b, best_a = (x[:, 0] for x in search(features_b, features_a, 1))
    score_a, score_b = 1.0 - distance_a / 2.0, 1.0 - distance_b / 2.0
    mutual_a = best_a[best_b] == np.arange(len(features_a))
    mutual_b = best_b[best_a] == np.arange(len(features_b))
    mutual = int(mutual_a.sum())
    mutual_only = mutual > min_mutual
    keep_a, keep_b = score_a > threshold, score_b > threshold
    if mutual_only:
        keep_a &= mutual_a
        keep_b &= mutual_b
    rows_a, rows_b = np.flatnonzero(keep_a), np.flatnonzero(keep_b)
    return PseudoLabels(
        torch.from_numpy(rows_a), torch.from_numpy(best_b[rows_a]), torch.from_numpy(rows_b),
        torch.from_numpy(best_a[rows_b]), mutual, mutual_only,
    )


def restrict_to_batch(
    labels: PseudoLabels, batch_a: np.ndarray, batch_b: np.ndarray, num_a: int, num_b: int, device=None
) -> PseudoLabels:
    """Whole-set labels whose row and label both lie in the batch, as batch positions.

    Args:
        labels: from :func:`whole_set_pseudo_labels` (global indices).
        batch_a / batch_b: the global rows of the batch's view-A / view-B rows.
        num_a / num_b: rows of each view in the whole set.
    """
    position_a = np.full(num_a, -1, dtype=np.int64)
    position_b = np.full(num_b, -1, dtype=np.int64)
    position_a[np.asarray(batch_a)] = np.arange(len(batch_a))
    position_b[np.asarray(batch_b)] = np.arange(len(batch_b))

    def inside(rows: Tensor, targets: Tensor, rows_at: np.ndarray, targets_at: np.ndarray):
        r, t = rows_at[rows.numpy()], targets_at[targets.numpy()]
        both = (r >= 0) & (t >= 0)
        return torch.from_numpy(r[both]).to(device), torch.from_numpy(t[both]).to(device)

    rows_a, labels_a = inside(labels.rows_a, labels.labels_a, position_a, position_b)
    rows_b, labels_b = inside(labels.rows_b, labels.labels_b, position_b, position_a)
    return PseudoLabels(rows_a, labels_a, rows_b, labels_b, labels.mutual, labels.mutual_only)
