"""Ground-truth statistics of one split, from radius searches and a KD-tree: never a full
query x database distance matrix, so Pitts250k-sized splits fit in memory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np

from sfrs.data import Split, conventions_for
from sfrs.data.geo import EVAL_POSITIVE_RADIUS_M, TRAIN_POSITIVE_RADIUS_M

#: positives per query are counted at these radii (metres), training's and evaluation's.
COUNT_RADII_M = (TRAIN_POSITIVE_RADIUS_M, EVAL_POSITIVE_RADIUS_M)


@dataclass(frozen=True, eq=False)
class SplitStats:
    """Statistics of one split.

    Attributes:
        radius_m / radius_source: the radius that decides whether a query has a positive
            (the data set's convention, 25 m by default) and where that value comes from.
        positive_counts: radius (m) -> (Q,) int64 number of database images within it.
        nearest_m: (Q,) float64 distance from each query to its nearest database image.
        has_positive: (Q,) bool, a database image within ``radius_m``.
    """

    split: Split
    radius_m: float
    radius_source: str
    positive_counts: Dict[float, np.ndarray]
    nearest_m: np.ndarray
    has_positive: np.ndarray

    def to_dict(self) -> dict:
        """The split's entry of ``stats.json``."""
        both = np.concatenate([self.split.database_utm, self.split.query_utm])
        low, high = both.min(axis=0), both.max(axis=0)
        return {
            "num_database": self.split.num_database,
            "num_queries": self.split.num_queries,
            "radius_m": self.radius_m,
            "radius_source": self.radius_source,
            "queries_without_positive": int((~self.has_positive).sum()),
            "positives_per_query": {
                f"{radius:g}m": summary(counts) for radius, counts in self.positive_counts.items()
            },
            "nearest_database_m": summary(self.nearest_m),
            "utm_extent": {
                "easting": [float(low[0]), float(high[0])],
                "northing": [float(low[1]), float(high[1])],
                "width_m": float(high[0] - low[0]),
                "height_m": float(high[1] - low[1]),
            },
        }


def summary(values: np.ndarray) -> Dict[str, float]:
    """Mean, median and max of a non-empty array."""
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "median": float(np.median(values)), "max": float(values.max())}


def split_stats(split: Split) -> SplitStats:
    """Counts within 10 m and 25 m (``Split.positives``), nearest database distances
    (``scipy.spatial.cKDTree``) and positives within the data set's convention radius."""
    from scipy.spatial import cKDTree

    conventions = conventions_for(split.dataset)
    radius = float(conventions.threshold_m)
    counts = {
        float(r): np.array([len(p) for p in split.positives(r)], dtype=np.int64)
        for r in sorted(set(COUNT_RADII_M) | {radius})
    }
    nearest, _ = cKDTree(np.asarray(split.database_utm, dtype=np.float64)).query(
        np.asarray(split.query_utm, dtype=np.float64), k=1
    )
    return SplitStats(
        split=split,
        radius_m=radius,
        radius_source=conventions.source,
        positive_counts={r: counts[r] for r in COUNT_RADII_M},
        nearest_m=np.asarray(nearest, dtype=np.float64),
        has_positive=counts[radius] > 0,
    )
