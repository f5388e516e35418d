"""A split of a geo-localization data set: database + queries with UTM positions.

Ground truth is a radius search on UTM (easting, northing) in metres: 10 m for training
positives, 25 m for evaluation (NetVLAD, Arandjelovic et al., CVPR 2016).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from sfrs.errors import DataError

TRAIN_POSITIVE_RADIUS_M = 10.0
EVAL_POSITIVE_RADIUS_M = 25.0


@dataclass(frozen=True, eq=False)
class Split:
    """Database and query images of one split, in file order.

    Attributes:
        dataset: human-readable data set name (e.g. ``pitts30k`` or ``synthetic:small``).
        split: ``train``, ``val`` or ``test``.
        database_paths / query_paths: absolute image paths.
        database_utm / query_utm: float64 arrays of shape (N, 2), (easting, northing) in metres.
        database_place_ids: optional int array (N,) grouping database images of one place
            (e.g. the views of one panorama), used by spatial non-maximum suppression.
        query_attributes: optional per-query arrays (e.g. ``night``) for breakdowns.
        protocol: free text naming the evaluation protocol, written into reports.
    """

    dataset: str
    split: str
    database_paths: Sequence[str]
    query_paths: Sequence[str]
    database_utm: np.ndarray
    query_utm: np.ndarray
    database_place_ids: Optional[np.ndarray] = None
    query_attributes: Dict[str, np.ndarray] = field(default_factory=dict)
    protocol: str = "standard"
    # ground truth per radius, computed once: evaluation, reports and galleries all ask
    _positives: Dict[float, List[np.ndarray]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for name, paths, utm in (
            ("database", self.database_paths, self.database_utm),
            ("queries", self.query_paths, self.query_utm),
        ):
            if len(paths) == 0:
                raise DataError(f"{self.dataset}: split '{self.split}' has no {name} images")
            if utm.shape != (len(paths), 2):
                raise DataError(
                    f"{self.dataset}: split '{self.split}' {name} has {len(paths)} images "
                    f"but UTM array of shape {tuple(utm.shape)}"
                )
            if not np.all(np.isfinite(utm)):
                raise DataError(f"{self.dataset}: split '{self.split}' {name} has non-finite UTM")
        if self.database_place_ids is not None and np.shape(self.database_place_ids) != (len(self.database_paths),):
            raise DataError(
                f"{self.dataset}: split '{self.split}' has {len(self.database_paths)} database images "
                f"but place ids of shape {np.shape(self.database_place_ids)}"
            )

    @property
    def num_database(self) -> int:
        return len(self.database_paths)

    @property
    def num_queries(self) -> int:
        return len(self.query_paths)

    def positives(self, radius: float = EVAL_POSITIVE_RADIUS_M) -> List[np.ndarray]:
        """Database indices within ``radius`` metres of each query, nearest first
        (computed once per radius; treat the arrays as read-only)."""
        key = float(radius)
        if key not in self._positives:
            self._positives[key] = positives_within(self.query_utm, self.database_utm, radius)
        return self._positives[key]

    def summary(self) -> str:
        return (
            f"{self.dataset} [{self.split}]: {self.num_database:,} database images, "
            f"{self.num_queries:,} queries"
        )


def positives_within(query_utm: np.ndarray, database_utm: np.ndarray, radius: float) -> List[np.ndarray]:
    """Per query, the int64 database indices within ``radius`` metres, sorted by distance.

    Args:
        query_utm: (Q, 2) positions; database_utm: (N, 2) positions.
    Returns:
        A list of Q int64 arrays (possibly empty).
    """
    from scipy.spatial import cKDTree  # here, not at the top: importing sfrs.data stays cheap

    database_utm = np.asarray(database_utm, dtype=np.float64)
    query_utm = np.asarray(query_utm, dtype=np.float64)
    tree = cKDTree(database_utm)
    neighbours = tree.query_ball_point(query_utm, r=radius)
    result = []
    for q, idx in enumerate(neighbours):
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size:
            dist = np.linalg.norm(database_utm[idx] - query_utm[q], axis=1)
            idx = idx[np.argsort(dist, kind="stable")]
        result.append(idx)
    return result
