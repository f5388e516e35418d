"""Planning of the synthetic cross-view set: sizes, grid districts of blocks, lots,
buildings, trees and parked cars, and which blocks get drone queries. Pure data (no
drawing): :mod:`.cross_view_render` draws it, :mod:`.cross_view` writes it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from sfrs.data.synthetic import facades
from sfrs.data.synthetic.facades import RGB, jitter
from sfrs.data.synthetic.seeding import rng_for
from sfrs.errors import DataError

SPLITS = ("train", "test")
#: first building id of each split (train and test ids never collide).
FIRST_ID = {"train": 0, "test": 1000}

# Random-stream purposes; the street city uses 1-5.
PLAN = 11
DRONE_VIEW = 12
SATELLITE_VIEW = 13
SELECTION = 14

ROAD_WIDTH_M = 12.0
SIDEWALK_M = 2.5
BLOCK_SIZE_M = (38.0, 58.0)  # a block's side, inside its sidewalks

GRASS: RGB = (96, 128, 70)
PAVEMENT: RGB = (172, 166, 156)
ASPHALT: RGB = (66, 68, 72)
ROAD: RGB = (58, 60, 64)
SIDEWALK: RGB = (178, 174, 166)
FLAT_ROOFS: Tuple[RGB, ...] = ((150, 150, 146), (92, 94, 98), (196, 194, 186), (64, 64, 66), (120, 110, 96), (96, 122, 78))
GABLE_ROOFS: Tuple[RGB, ...] = ((160, 72, 52), (112, 72, 52), (82, 86, 96), (138, 100, 72))
CAR_COLOURS: Tuple[RGB, ...] = ((200, 200, 205), (30, 30, 34), (150, 20, 24), (30, 60, 130), (230, 230, 226), (90, 94, 100))


@dataclass(frozen=True)
class CrossViewSize:
    """Counts of one named size.

    Attributes:
        train_grid / test_grid: (columns, rows) of blocks in each district.
        test_query_fraction: test blocks with drone queries (the rest are gallery distractors).
        drone_views: drone images per block.
        image_px: side of every (square) image.
    """

    name: str
    train_grid: Tuple[int, int]
    test_grid: Tuple[int, int]
    test_query_fraction: float
    drone_views: int
    image_px: int = 128


CROSS_VIEW_SIZES: Dict[str, CrossViewSize] = {
    "tiny": CrossViewSize("tiny", (5, 4), (4, 4), 0.75, 4),
    "small": CrossViewSize("small", (12, 12), (10, 10), 0.75, 12),
    "medium": CrossViewSize("medium", (27, 26), (24, 24), 0.75, 24),
}


def get_cross_view_size(size: str) -> CrossViewSize:
    try:
        return CROSS_VIEW_SIZES[size]
    except (KeyError, TypeError):
        raise DataError(f"unknown synthetic cross-view size '{size}': choose {', '.join(CROSS_VIEW_SIZES)}") from None


# -- the world ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Building:
    """A box (or gabled box) on a footprint; metres, x east, y north.

    ``facade`` is the street city's plan of its front facade, drawn on every wall."""

    x0: float
    y0: float
    x1: float
    y1: float
    height: float
    roof: RGB
    gable: bool
    rooftop: Tuple[Tuple[float, float, float, float, float], ...]  # (x0, y0, x1, y1, height) units
    facade: facades.Building

    @property
    def centre(self) -> Tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)


@dataclass(frozen=True)
class Tree:
    x: float
    y: float
    radius: float
    height: float
    colour: RGB


@dataclass(frozen=True)
class Car:
    x: float
    y: float
    along_x: bool  # orientation of its long side
    colour: RGB


@dataclass(frozen=True)
class Lot:
    """Ground of part of a block: ``grass``, ``pavement`` or ``parking``."""

    x0: float
    y0: float
    x1: float
    y1: float
    ground: str


@dataclass(frozen=True)
class Block:
    """One building id: a block and what stands on it."""

    id: str
    x0: float
    y0: float
    x1: float
    y1: float
    lots: Tuple[Lot, ...]
    buildings: Tuple[Building, ...]
    trees: Tuple[Tree, ...]

    @property
    def centre(self) -> Tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)

    @property
    def size(self) -> float:
        return max(self.x1 - self.x0, self.y1 - self.y0)


@dataclass(frozen=True)
class District:
    """A grid of blocks and the roads between them; ``cars`` per epoch (0 satellite, 1 drone)."""

    split: str
    blocks: Tuple[Block, ...]
    extent: Tuple[float, float, float, float]  # x0, y0, x1, y1 of the ground drawn
    roads: Tuple[Tuple[float, float, float, float], ...]
    cars: Tuple[Tuple[Car, ...], Tuple[Car, ...]]


def _plan_building(rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float) -> Building:
    style_index = int(rng.choice(len(facades.STYLES), p=facades.STYLE_WEIGHTS))
    style = facades.STYLES[style_index]
    width = max(x1 - x0, y1 - y0)
    # The street city's plan of one building: colours, floors, windows, shop sign.
    facade = facades._plan_building(rng, style_index, 0.0, width)  # noqa: SLF001 - the city's own planner
    height = facade.height_m
    gable = style.roof == "gable"
    roof = jitter(rng, (GABLE_ROOFS if gable else FLAT_ROOFS)[int(rng.integers(len(GABLE_ROOFS if gable else FLAT_ROOFS)))], 10.0)
    units = []
    if not gable:
        for _ in range(int(rng.integers(0, 4))):
            w, d = float(rng.uniform(1.5, 4.0)), float(rng.uniform(1.5, 4.0))
            ux = float(rng.uniform(x0 + 1.0, max(x0 + 1.1, x1 - w - 1.0)))
            uy = float(rng.uniform(y0 + 1.0, max(y0 + 1.1, y1 - d - 1.0)))
            units.append((ux, uy, min(ux + w, x1 - 0.5), min(uy + d, y1 - 0.5), float(rng.uniform(1.0, 2.5))))
    return Building(x0, y0, x1, y1, height, roof, gable, tuple(units), facade)


def _plan_lot(rng: np.random.Generator, lot: Tuple[float, float, float, float], buildings: List[Building],
              trees: List[Tree], lots: List[Lot]) -> None:
    x0, y0, x1, y1 = lot
    kind = rng.choice(["building", "park", "parking"], p=[0.78, 0.12, 0.10])
    if kind == "building":
        setback = float(rng.uniform(1.0, 4.0))
        bx0, by0, bx1, by1 = x0 + setback, y0 + setback, x1 - setback, y1 - setback
        if rng.random() < 0.5:  # a yard on one side
            if rng.random() < 0.5:
                bx1 = bx0 + (bx1 - bx0) * float(rng.uniform(0.6, 1.0))
            else:
                by1 = by0 + (by1 - by0) * float(rng.uniform(0.6, 1.0))
        if bx1 - bx0 > 6.0 and by1 - by0 > 6.0:
            buildings.append(_plan_building(rng, bx0, by0, bx1, by1))
        lots.append(Lot(x0, y0, x1, y1, "pavement" if rng.random() < 0.6 else "grass"))
    elif kind == "park":
        lots.append(Lot(x0, y0, x1, y1, "grass"))
        for _ in range(int(rng.integers(3, 9))):
            r = float(rng.uniform(1.8, 3.8))
            trees.append(Tree(float(rng.uniform(x0 + r, x1 - r)), float(rng.uniform(y0 + r, y1 - r)), r,
                              float(rng.uniform(6.0, 11.0)), jitter(rng, (62, 112, 52), 14.0)))
    else:
        lots.append(Lot(x0, y0, x1, y1, "parking"))


def _plan_block(rng: np.random.Generator, block_id: str, x0: float, y0: float, x1: float, y1: float) -> Block:
    layout = rng.choice(["one", "two", "four"], p=[0.4, 0.35, 0.25])
    if layout == "one":
        parts = [(x0, y0, x1, y1)]
    elif layout == "two":
        t = float(rng.uniform(0.35, 0.65))
        if x1 - x0 >= y1 - y0:
            xm = x0 + t * (x1 - x0)
            parts = [(x0, y0, xm, y1), (xm, y0, x1, y1)]
        else:
            ym = y0 + t * (y1 - y0)
            parts = [(x0, y0, x1, ym), (x0, ym, x1, y1)]
    else:
        xm = x0 + float(rng.uniform(0.4, 0.6)) * (x1 - x0)
        ym = y0 + float(rng.uniform(0.4, 0.6)) * (y1 - y0)
        parts = [(x0, y0, xm, ym), (xm, y0, x1, ym), (x0, ym, xm, y1), (xm, ym, x1, y1)]
    buildings: List[Building] = []
    trees: List[Tree] = []
    lots: List[Lot] = []
    for part in parts:
        _plan_lot(rng, part, buildings, trees, lots)
    # street trees on the sidewalk
    for side in range(4):
        length = (x1 - x0) if side < 2 else (y1 - y0)
        for t in np.arange(4.0, length - 3.0, 9.0):
            if rng.random() < 0.35:
                r = float(rng.uniform(1.6, 2.8))
                if side == 0:
                    x, y = x0 + t, y0 - SIDEWALK_M / 2
                elif side == 1:
                    x, y = x0 + t, y1 + SIDEWALK_M / 2
                elif side == 2:
                    x, y = x0 - SIDEWALK_M / 2, y0 + t
                else:
                    x, y = x1 + SIDEWALK_M / 2, y0 + t
                trees.append(Tree(float(x), float(y), r, float(rng.uniform(5.0, 8.0)), jitter(rng, (70, 118, 56), 12.0)))
    return Block(block_id, x0, y0, x1, y1, tuple(lots), tuple(buildings), tuple(trees))


def _park_cars(rng: np.random.Generator, blocks: Tuple[Block, ...], roads, count_scale: float) -> Tuple[Car, ...]:
    cars: List[Car] = []
    for block in blocks:
        for lot in block.lots:
            if lot.ground != "parking":
                continue
            for x in np.arange(lot.x0 + 2.0, lot.x1 - 2.0, 2.8):
                for y in (lot.y0 + 3.5, lot.y1 - 3.5):
                    if rng.random() < 0.6 * count_scale:
                        cars.append(Car(float(x), float(y), False, CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]))
    for rx0, ry0, rx1, ry1 in roads:
        along_x = rx1 - rx0 > ry1 - ry0
        length = max(rx1 - rx0, ry1 - ry0)
        for _ in range(int(rng.poisson(length / 25.0 * count_scale))):
            t = float(rng.uniform(0.0, 1.0))
            lane = float(rng.choice([-2.5, 2.5]))
            if along_x:
                x, y = rx0 + t * (rx1 - rx0), (ry0 + ry1) / 2 + lane
            else:
                x, y = (rx0 + rx1) / 2 + lane, ry0 + t * (ry1 - ry0)
            cars.append(Car(x, y, along_x, CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]))
    return tuple(cars)


def plan_district(size: CrossViewSize, split: str, seed: int) -> District:
    """The blocks, roads and parked cars of ``split``; deterministic in (size, split, seed)."""
    split_index = SPLITS.index(split)
    rng = rng_for(seed, PLAN, split_index)
    columns, rows = size.train_grid if split == "train" else size.test_grid
    widths = rng.uniform(*BLOCK_SIZE_M, columns)
    heights = rng.uniform(*BLOCK_SIZE_M, rows)
    pitch = ROAD_WIDTH_M + 2 * SIDEWALK_M
    xs = np.concatenate([[0.0], np.cumsum(widths + pitch)])
    ys = np.concatenate([[0.0], np.cumsum(heights + pitch)])
    blocks = []
    for r in range(rows):
        for c in range(columns):
            x0, y0 = xs[c] + pitch / 2, ys[r] + pitch / 2
            block_id = f"{FIRST_ID[split] + len(blocks):04d}"
            blocks.append(_plan_block(rng, block_id, float(x0), float(y0), float(x0 + widths[c]), float(y0 + heights[r])))
    margin = 160.0  # ground beyond the outer streets, for drone views looking outwards
    extent = (-margin, -margin, float(xs[-1]) + margin, float(ys[-1]) + margin)
    roads = tuple(
        [(extent[0], float(y) - ROAD_WIDTH_M / 2, extent[2], float(y) + ROAD_WIDTH_M / 2) for y in ys]
        + [(float(x) - ROAD_WIDTH_M / 2, extent[1], float(x) + ROAD_WIDTH_M / 2, extent[3]) for x in xs]
    )
    blocks_t = tuple(blocks)
    cars = (_park_cars(rng_for(seed, PLAN, split_index, 1), blocks_t, roads, 1.0),
            _park_cars(rng_for(seed, PLAN, split_index, 2), blocks_t, roads, 1.0))
    return District(split, blocks_t, extent, roads, cars)


def query_blocks(size: CrossViewSize, district: District, seed: int) -> List[Block]:
    """Blocks with drone queries: all of train; ``test_query_fraction`` of test."""
    if district.split == "train":
        return list(district.blocks)
    count = max(1, int(round(size.test_query_fraction * len(district.blocks))))
    chosen = np.sort(rng_for(seed, SELECTION).choice(len(district.blocks), size=count, replace=False))
    return [district.blocks[i] for i in chosen]
