"""The figures of a split's statistics: map, histograms and a grid of sample images.

Queries with and without a positive differ in marker shape as well as colour (the Okabe-Ito
blue and vermillion of the retrieval map), for colour-blind readers and greyscale prints.
matplotlib is imported with the Agg backend inside each function: it never opens a window.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
from PIL import Image

from sfrs.analysis.stats import SplitStats
from sfrs.retrieval.map_plot import CORRECT_COLOUR, DATABASE_COLOUR, ORIGIN_STEP_M, WRONG_COLOUR
from sfrs.retrieval.thumbnails import draw_cell
from sfrs.utils.io import atomic_path

DPI = 100
#: figure sizes in inches; at :data:`DPI` the PNGs are 640x640 and 960x400 pixels.
MAP_SIZE_IN = (6.4, 6.4)
HISTOGRAM_SIZE_IN = (9.6, 4.0)
#: sample grid: this many database images in the first row, as many queries in the second.
SAMPLES_PER_ROW = 4
#: (height, width) of one sample cell in pixels.
SAMPLE_CELL = (150, 200)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return Path(path)


def _title(stats: SplitStats, what: str) -> str:
    return f"{stats.split.dataset} [{stats.split.split}]: {what}"


def round_origin(*positions: np.ndarray) -> np.ndarray:
    """(2,) the lowest easting and northing rounded down to a multiple of 100 m."""
    low = np.concatenate([np.asarray(p, dtype=np.float64) for p in positions]).min(axis=0)
    return np.floor(low / ORIGIN_STEP_M) * ORIGIN_STEP_M


def save_map(stats: SplitStats, path: Path) -> Path:
    """Database positions in light grey; queries with a positive within the radius as blue
    circles, without one as vermillion crosses; metres from a round origin, equal aspect."""
    plt = _pyplot()
    split = stats.split
    origin = round_origin(split.database_utm, split.query_utm)
    database = split.database_utm - origin
    queries = split.query_utm - origin
    with_positive, without = queries[stats.has_positive], queries[~stats.has_positive]
    fig, ax = plt.subplots(figsize=MAP_SIZE_IN)
    ax.scatter(*database.T, s=8, c=DATABASE_COLOUR, marker="o", linewidths=0,
               label=f"database ({len(database):,})", zorder=1)
    ax.scatter(*with_positive.T, s=18, c=CORRECT_COLOUR, marker="o",
               label=f"query with a positive within {stats.radius_m:g} m ({len(with_positive):,})", zorder=2)
    ax.scatter(*without.T, s=28, c=WRONG_COLOUR, marker="x", linewidths=1.4,
               label=f"query without ({len(without):,})", zorder=3)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(f"easting - {origin[0]:,.0f} (m)")
    ax.set_ylabel(f"northing - {origin[1]:,.0f} (m)")
    ax.set_title(_title(stats, "positions"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def save_positives_histogram(stats: SplitStats, path: Path) -> Path:
    """One histogram of positives per query for each counted radius (10 m, 25 m)."""
    plt = _pyplot()
    radii = sorted(stats.positive_counts)
    fig, axes = plt.subplots(1, len(radii), figsize=HISTOGRAM_SIZE_IN)
    for ax, radius in zip(np.atleast_1d(axes), radii):
        counts = stats.positive_counts[radius]
        # one bar per integer count: the zero bar is the queries without a positive
        ax.hist(counts, bins=np.arange(counts.max() + 2) - 0.5, color=CORRECT_COLOUR, edgecolor="white")
        ax.set_xlabel(f"database images within {radius:g} m")
        ax.set_ylabel("queries")
        ax.set_title(f"within {radius:g} m: median {np.median(counts):g}, max {counts.max()}")
    fig.suptitle(_title(stats, "positives per query"))
    fig.tight_layout()
    return _save(fig, path)


def save_nearest_histogram(stats: SplitStats, path: Path) -> Path:
    """Histogram of each query's distance to its nearest database image, the radius marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=HISTOGRAM_SIZE_IN)
    ax.hist(stats.nearest_m, bins=min(50, max(5, len(stats.nearest_m) // 5)), color=CORRECT_COLOUR, edgecolor="white")
    ax.axvline(stats.radius_m, color=WRONG_COLOUR, linestyle="--", label=f"radius {stats.radius_m:g} m")
    ax.set_xlabel("distance to the nearest database image (m)")
    ax.set_ylabel("queries")
    ax.set_title(_title(stats, "nearest database image"))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def sample_indices(count: int, wanted: int = SAMPLES_PER_ROW) -> np.ndarray:
    """Up to ``wanted`` indices spread evenly over ``count`` items, first and last included."""
    return np.unique(np.linspace(0, count - 1, min(wanted, count)).round().astype(np.int64))


def save_samples(stats: SplitStats, path: Path, cell: Tuple[int, int] = SAMPLE_CELL) -> Path:
    """A 2-row grid of letterboxed thumbnails: database images above, queries below
    (``SAMPLES_PER_ROW`` columns of ``cell`` (height, width) pixels)."""
    split = stats.split
    rows: Sequence[Tuple[str, str, Sequence[str]]] = (
        ("neutral", "database", split.database_paths),
        ("query", "query", split.query_paths),
    )
    height, width = cell
    grid = Image.new("RGB", (SAMPLES_PER_ROW * width, len(rows) * height), (255, 255, 255))
    for row, (status, label, paths) in enumerate(rows):
        for column, index in enumerate(sample_indices(len(paths))):
            grid.paste(draw_cell(paths[index], cell, status, f"{label} {index:,}"), (column * width, row * height))
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return Path(path)
