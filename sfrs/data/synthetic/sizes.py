"""The named sizes of the synthetic city and the generator version.

A size fixes, per split, how many streets the district has and how many database and
query images it holds; everything else (geometry, appearance) is shared by all sizes so
that a model trained on ``small`` behaves the same on ``medium``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

from sfrs.errors import DataError

# Bump whenever the same (size, seed) would produce different files: the cache key
# contains it, so stale cities are never reused.
GENERATOR_VERSION = 1

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitSize:
    """Counts of one split (district).

    Attributes:
        streets: parallel streets in the district.
        database: database images (two per camera position: one per street side).
        queries: query images.
        gap_streets: streets with a stretch lacking database coverage, where the
            queries without a 25 m positive are taken.
    """

    streets: int
    database: int
    queries: int
    gap_streets: int = 1


@dataclass(frozen=True)
class CitySize:
    """Parameters of one named city size.

    Attributes:
        name: ``tiny``, ``small`` or ``medium``.
        train / val / test: per-split counts.
        db_spacing_m: distance between consecutive database camera positions.
        uncovered_fraction: fraction of each split's queries with no database image
            within 25 m (Pitts30k-like: some queries cannot be localised).
    """

    name: str
    train: SplitSize
    val: SplitSize
    test: SplitSize
    db_spacing_m: float = 3.0
    uncovered_fraction: float = 0.05

    def split(self, split: str) -> SplitSize:
        """Counts of ``split`` (``train``, ``val`` or ``test``)."""
        if split not in SPLITS:
            raise DataError(f"unknown split '{split}': choose train, val or test")
        return getattr(self, split)


SIZES: Dict[str, CitySize] = {
    "tiny": CitySize(
        name="tiny",
        train=SplitSize(streets=3, database=150, queries=80),
        val=SplitSize(streets=2, database=80, queries=40),
        test=SplitSize(streets=2, database=80, queries=40),
    ),
    "small": CitySize(
        name="small",
        train=SplitSize(streets=6, database=1000, queries=500),
        val=SplitSize(streets=3, database=400, queries=200),
        test=SplitSize(streets=3, database=400, queries=200),
    ),
    "medium": CitySize(
        name="medium",
        train=SplitSize(streets=14, database=5000, queries=2500, gap_streets=2),
        val=SplitSize(streets=6, database=2000, queries=1000, gap_streets=2),
        test=SplitSize(streets=6, database=2000, queries=1000, gap_streets=2),
    ),
}


def get_size(size: str) -> CitySize:
    """The :class:`CitySize` called ``size``.

    Raises:
        DataError: ``size`` is not one of :data:`SIZES`.
    """
    try:
        return SIZES[size]
    except (KeyError, TypeError):
        raise DataError(f"unknown synthetic city size '{size}': choose tiny, small or medium") from None
