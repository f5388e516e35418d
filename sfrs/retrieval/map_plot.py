"""Where the model fails: every query at its UTM position, marked correct or wrong at R@1,
over the database positions (``<prefix>_map.png`` next to the retrieval galleries).

Correct and wrong differ in shape as well as colour (filled circle vs cross, in the
Okabe-Ito blue and vermillion that colour-blind readers tell apart); queries without any
positive within the radius get a third mark, as they can never be correct. Coordinates are
shifted to a round origin so that the axes read in metres instead of an offset notation.
matplotlib is imported inside :func:`save_map` with the Agg backend: it never opens a window.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np

from sfrs.data import Split
from sfrs.retrieval.recall import correct_matrix
from sfrs.utils.io import atomic_path

CORRECT_COLOUR = "#0072B2"
WRONG_COLOUR = "#D55E00"
DATABASE_COLOUR = "#b4b4b4"
#: the origin is rounded down to a multiple of this many metres.
ORIGIN_STEP_M = 100.0


@dataclass(frozen=True, eq=False)
class MapPoints:
    """The plotted positions, in metres from ``origin`` (easting, northing).

    Attributes:
        database: (N, 2) every database image.
        correct / wrong: (a, 2) / (b, 2) queries whose first prediction is / is not a positive.
        without_positive: (c, 2) queries with no database image within the radius.
        origin: (2,) UTM of the plot's (0, 0).
    """

    database: np.ndarray
    correct: np.ndarray
    wrong: np.ndarray
    without_positive: np.ndarray
    origin: Tuple[float, float]


def map_points(split: Split, predictions: np.ndarray, positives: Sequence[np.ndarray]) -> MapPoints:
    """Split the queries of ``split`` by their R@1 outcome.

    Args:
        predictions: (Q, k) ranked database indices of all queries (the first column decides).
        positives: Q arrays of database indices within the evaluation radius.
    """
    database_utm = np.asarray(split.database_utm, dtype=np.float64)
    query_utm = np.asarray(split.query_utm, dtype=np.float64)
    both = np.concatenate([database_utm, query_utm])
    origin = np.floor(both.min(axis=0) / ORIGIN_STEP_M) * ORIGIN_STEP_M
    first_correct = correct_matrix(np.asarray(predictions)[:, :1], positives)[:, 0]
    has_positive = np.array([len(p) > 0 for p in positives], dtype=bool)
    queries = query_utm - origin
    return MapPoints(
        database=database_utm - origin,
        correct=queries[first_correct],
        wrong=queries[~first_correct & has_positive],
        without_positive=queries[~has_positive],
        origin=(float(origin[0]), float(origin[1])),
    )


def save_map(
    path: Union[str, Path], split: Split, predictions: np.ndarray, positives: Sequence[np.ndarray]
) -> Path:
    """Write the map as PNG, atomically; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = map_points(split, predictions, positives)
    fig, ax = plt.subplots(figsize=(6.4, 6.4))
    ax.scatter(*points.database.T, s=8, c=DATABASE_COLOUR, marker="o", linewidths=0,
               label=f"database ({len(points.database):,})", zorder=1)
    ax.scatter(*points.correct.T, s=18, c=CORRECT_COLOUR, marker="o",
               label=f"correct at R@1 ({len(points.correct):,})", zorder=2)
    ax.scatter(*points.wrong.T, s=28, c=WRONG_COLOUR, marker="x", linewidths=1.4,
               label=f"wrong at R@1 ({len(points.wrong):,})", zorder=3)
    if len(points.without_positive):
        ax.scatter(*points.without_positive.T, s=22, facecolors="none", edgecolors="black", marker="s",
                   label=f"no positive in radius ({len(points.without_positive):,})", zorder=3)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(f"easting - {points.origin[0]:,.0f} (m)")
    ax.set_ylabel(f"northing - {points.origin[1]:,.0f} (m)")
    ax.set_title(f"{split.dataset} [{split.split}]: queries by R@1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return Path(path)
