"""Where things are: districts, streets, database camera positions and query positions.

Each split is its own district (as Pitts30k's train/val/test), kilometres from the
others. A district is a set of parallel streets at least ``MIN_STREET_SPACING_M`` apart,
so no camera has a positive (25 m) on another street. Database cameras stand every
``db_spacing_m`` metres on the centre line and photograph both street sides; one street
per split (two in ``medium``) has a stretch without database coverage, where the
queries that cannot be localised are taken.

Coordinates: a street has a local axis ``x`` (metres from its first camera) and a
``lateral`` offset (metres towards its left side). Each side's facade is a strip whose
own horizontal axis (``facade x``) runs left-to-right as seen by a camera facing it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from sfrs.data.synthetic import seeding
from sfrs.data.synthetic.sizes import SPLITS, CitySize

UTM_ZONE_NUMBER = 10
UTM_ZONE_LETTER = "S"
# Fake but consistent UTM frame: easting ~ 500000 + x, northing ~ 4000000 + y.
UTM_ORIGIN = (500000.0, 4000000.0)
# District centres relative to UTM_ORIGIN; 6 km apart, far more than a district's extent.
DISTRICT_CENTRES = {"train": (2000.0, 3000.0), "val": (8000.0, 3000.0), "test": (14000.0, 3000.0)}

STREET_HALF_WIDTH_M = 10.0  # centre line to facade: a 90 degree view then spans ~20 m of facade
MIN_STREET_SPACING_M = 95.0
MAX_STREET_SPACING_M = 130.0
FACADE_MARGIN_M = 30.0  # facade drawn beyond the end cameras so every view is filled
GAP_M = 82.0  # uncovered stretch: 2 x 28 m clearance + room for the uncovered queries
UNCOVERED_CLEARANCE_M = 28.0  # > 25 m: an uncovered query has no positive even with lateral offsets
QUERY_END_MARGIN_M = 1.5  # queries may stand slightly beyond the end cameras
DB_LATERAL_SIGMA_M = 0.25
QUERY_LATERAL_M = 2.5  # queries drive in any lane: +-2.5 m changes the facade distance (zoom)

DATABASE = 0
QUERIES = 1
KINDS = ("database", "queries")


@dataclass(frozen=True)
class Street:
    """One straight street of a district.

    Attributes:
        index: street number within the split.
        origin: UTM (easting, northing) of the centre line at ``x = 0``.
        direction: unit vector (east, north) of increasing ``x``.
        length_m: ``x`` of the last database camera.
        covered: ``(start, end)`` intervals of ``x`` holding database cameras.
    """

    index: int
    origin: Tuple[float, float]
    direction: Tuple[float, float]
    length_m: float
    covered: Tuple[Tuple[float, float], ...]

    @property
    def facade_length_m(self) -> float:
        """Length of each side's facade strip."""
        return self.length_m + 2 * FACADE_MARGIN_M

    @property
    def left_normal(self) -> Tuple[float, float]:
        """Unit vector (east, north) pointing to the street's left side."""
        dx, dy = self.direction
        return (-dy, dx)

    def utm(self, x: float, lateral: float) -> Tuple[float, float]:
        """UTM (easting, northing) of the point ``x`` along, ``lateral`` towards the left side."""
        nx, ny = self.left_normal
        return (
            UTM_ORIGIN[0] + self.origin[0] + x * self.direction[0] + lateral * nx,
            UTM_ORIGIN[1] + self.origin[1] + x * self.direction[1] + lateral * ny,
        )

    def facade_x(self, x: float, side: int) -> float:
        """Position along ``side``'s facade strip of a camera at street ``x``.

        Facing the left side, the camera's right points along +x; facing the right side it
        points along -x, so that strip is stored reversed.
        """
        return x + FACADE_MARGIN_M if side == 0 else self.length_m + FACADE_MARGIN_M - x

    def facade_distance(self, lateral: float, side: int) -> float:
        """Distance from a camera at ``lateral`` to ``side``'s facade."""
        return STREET_HALF_WIDTH_M - lateral if side == 0 else STREET_HALF_WIDTH_M + lateral

    def heading_deg(self, side: int) -> float:
        """Compass heading (degrees clockwise from north) of a camera squarely facing ``side``."""
        nx, ny = self.left_normal
        if side == 1:
            nx, ny = -nx, -ny
        return math.degrees(math.atan2(nx, ny)) % 360.0


@dataclass(frozen=True)
class Shot:
    """Where one image is taken.

    Attributes:
        kind: ``DATABASE`` or ``QUERIES``.
        index: image number within its kind and split.
        street: street index; side: 0 (left) or 1 (right) facade.
        x: position along the street; lateral: offset towards the left side.
        place: database panorama number (both sides of a position share it); -1 for queries.
        covered: False for the queries placed on purpose without a 25 m positive.
    """

    kind: int
    index: int
    street: int
    side: int
    x: float
    lateral: float
    place: int
    covered: bool = True


@dataclass(frozen=True)
class SplitLayout:
    """Streets and camera positions of one split, database and queries in file-index order."""

    split: str
    streets: Tuple[Street, ...]
    database: Tuple[Shot, ...]
    queries: Tuple[Shot, ...]

    @property
    def uncovered_queries(self) -> int:
        """Number of queries placed on purpose more than 25 m from any database camera."""
        return sum(not q.covered for q in self.queries)

    def utm(self, shots: Sequence[Shot]) -> np.ndarray:
        """(N, 2) float64 UTM positions of ``shots``."""
        return np.array([self.streets[s.street].utm(s.x, s.lateral) for s in shots], dtype=np.float64).reshape(-1, 2)


def _apportion(total: int, weights: np.ndarray) -> List[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    raw = total * weights / weights.sum()
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def split_layout(size: CitySize, split: str, seed: int) -> SplitLayout:
    """The streets and cameras of ``split`` for a city of ``size``.

    Deterministic in (size, split, seed). The queries without coverage number
    ``round(uncovered_fraction * queries)`` exactly, so small splits still have some.
    """
    spec = size.split(split)
    split_index = SPLITS.index(split)
    rng = seeding.rng_for(seed, seeding.LAYOUT, split_index)
    spacing = size.db_spacing_m
    positions_per_street = _apportion(spec.database // 2, rng.uniform(0.7, 1.3, spec.streets))
    gap_streets = set(rng.choice(spec.streets, size=min(spec.gap_streets, spec.streets), replace=False).tolist())

    theta = rng.uniform(0.0, math.pi)
    direction = np.array([math.cos(theta), math.sin(theta)])
    normal = np.array([-direction[1], direction[0]])
    offsets_y = np.concatenate([[0.0], np.cumsum(rng.uniform(MIN_STREET_SPACING_M, MAX_STREET_SPACING_M, spec.streets - 1))])
    starts_x = rng.uniform(-40.0, 40.0, spec.streets)

    # (street index, x list, covered intervals, gap interval or None)
    plans = []
    for k, n in enumerate(positions_per_street):
        n = max(n, 2)
        if k in gap_streets and n >= 4:
            first = int(rng.integers(max(1, n // 3), max(2, n - n // 3) + 1))
            first = min(max(first, 1), n - 1)
            run1 = np.arange(first) * spacing
            run2 = run1[-1] + GAP_M + np.arange(n - first) * spacing
            xs = np.concatenate([run1, run2])
            covered = ((0.0, float(run1[-1])), (float(run2[0]), float(run2[-1])))
            gap = (float(run1[-1]), float(run2[0]))
        else:
            xs = np.arange(n) * spacing
            covered = ((0.0, float(xs[-1])),)
            gap = None
        plans.append((k, xs, covered, gap))

    centre = np.array(DISTRICT_CENTRES[split])
    mid_x = np.mean([sx + xs[-1] / 2 for sx, (_, xs, _, _) in zip(starts_x, plans)])
    mean_offset = offsets_y.mean() * normal + mid_x * direction  # centres the district on its centre
    streets = []
    for (k, xs, covered, gap), oy, sx in zip(plans, offsets_y, starts_x):
        origin = centre + oy * normal + sx * direction - mean_offset
        streets.append(
            Street(
                index=k,
                origin=(float(origin[0]), float(origin[1])),
                direction=(float(direction[0]), float(direction[1])),
                length_m=float(xs[-1]),
                covered=covered,
            )
        )

    database: List[Shot] = []
    place = 0
    for k, xs, _, _ in plans:
        for x in xs:
            lateral = float(np.clip(rng.normal(0.0, DB_LATERAL_SIGMA_M), -0.6, 0.6))
            for side in (0, 1):
                database.append(Shot(DATABASE, len(database), k, side, float(x), lateral, place))
            place += 1

    n_uncovered = int(round(size.uncovered_fraction * spec.queries)) if gap_streets else 0
    n_covered = spec.queries - n_uncovered
    intervals = [(k, a, b) for k, _, covered, _ in plans for a, b in covered]
    lengths = np.array([b - a + 2 * QUERY_END_MARGIN_M for _, a, b in intervals])
    gaps = [(k, gap) for k, _, _, gap in plans if gap is not None]
    raw_queries = []
    for j in rng.choice(len(intervals), size=n_covered, p=lengths / lengths.sum()):
        k, a, b = intervals[j]
        x = rng.uniform(a - QUERY_END_MARGIN_M, b + QUERY_END_MARGIN_M)
        raw_queries.append((k, x, True))
    for i in range(n_uncovered):
        k, (a, b) = gaps[i % len(gaps)]
        x = rng.uniform(a + UNCOVERED_CLEARANCE_M, b - UNCOVERED_CLEARANCE_M)
        raw_queries.append((k, x, False))
    queries = []
    for qi, j in enumerate(rng.permutation(len(raw_queries))):
        k, x, covered = raw_queries[j]
        side = int(rng.integers(2))
        lateral = float(rng.uniform(-QUERY_LATERAL_M, QUERY_LATERAL_M))
        queries.append(Shot(QUERIES, qi, k, side, float(x), lateral, -1, covered))

    return SplitLayout(split=split, streets=tuple(streets), database=tuple(database), queries=tuple(queries))
