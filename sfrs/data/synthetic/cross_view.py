"""A synthetic cross-view data set in the University-1652 layout: each block of a grid
district is one "building id", photographed from above (one north-up "satellite" tile
centred on the block) and by a drone around it (oblique views, headings within 45
degrees of north).

No cross-view data set can be downloaded here; this one is small enough for tests
(``tiny``: seconds) and for a CPU demo of ``sfrs-adapt`` (``small``: a few minutes).
It reuses the street city's facade styles and facade drawing (:mod:`.facades`,
:mod:`.strips`) for the walls the drone sees, and its seeding and atomic publication.

World: per split a district (train and test, as University-1652's disjoint building
sets) of blocks on a grid of streets. A block holds one to four lots: buildings (a
facade style, floors, wall and roof colours, rooftop units, flat or gable roofs), small
parks with trees, or parking lots. The views differ the way real satellite and drone
images do: another sensor and time (sun direction, shadows, parked cars, tree colour,
colour balance, blur), nadir vs oblique geometry, north-up vs rotated by up to 45 degrees,
roofs only vs roofs and facades. Drawing is :mod:`.cross_view_render`.

Layout written (``shared/spec/datasets.md`` section 4; ids are 4-digit folder names)::

    <root>/train/drone/<id>/image-NN.jpeg       <root>/train/satellite/<id>/<id>.jpg
    <root>/test/query_drone/<id>/...            <root>/test/gallery_satellite/<id>/<id>.jpg
    <root>/test/query_satellite/<id>/<id>.jpg   <root>/test/gallery_drone/<id>/...
    <root>/cross_view.json                      manifest (size, seed, counts, version)

Test blocks without queries are gallery distractors, as University-1652's 250 extra
buildings. Same (size, seed, version) gives byte-identical files.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from sfrs.data.synthetic import facades, writer
from sfrs.data.synthetic.facades import RGB, jitter
from sfrs.data.synthetic.seeding import rng_for
from sfrs.errors import DataError

PathLike = Union[str, Path]

CROSS_VIEW_VERSION = 2  # 2: drone headings within 90 degrees
MANIFEST = "cross_view.json"
MANIFEST_FORMAT = "sfrs-synthetic-cross-view"
SPLITS = ("train", "test")
#: first building id of each split (train and test ids never collide).
FIRST_ID = {"train": 0, "test": 1000}

# Random-stream purposes; the street city uses 1-5.
PLAN = 11
DRONE_VIEW = 12
SATELLITE_VIEW = 13
SELECTION = 14

#: headings of the drone views around a block. University-1652's drones circle the building
#: (360); the small CNNs trainable here are far from rotation invariant (with 360 a frozen
#: street-view model finds 20% R@1 drone -> satellite on 64 blocks, with 90 about 29%,
#: the regime of the foundation-model features the method was designed for).
DRONE_HEADING_SPREAD_DEG = 90.0
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


# -- writing -----------------------------------------------------------------------------------


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"synthetic cross-view seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def read_cross_view_manifest(root: PathLike) -> Optional[Dict]:
    """The manifest of a complete cross-view set at ``root``, or None."""
    try:
        data = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or data.get("complete") is not True:
        return None
    return data


def _is_complete(root: Path, size: str, seed: int) -> bool:
    data = read_cross_view_manifest(root)
    return data is not None and (data.get("size"), data.get("seed"), data.get("version")) == (size, seed, CROSS_VIEW_VERSION)


def _write_split(root: Path, size: CrossViewSize, seed: int, district: District, bar) -> Dict[str, int]:
    from sfrs.data.synthetic import cross_view_render as render

    split_index = SPLITS.index(district.split)
    queries = {b.id for b in query_blocks(size, district, seed)}
    scene = render.Scene(district, rng_for(seed, PLAN, split_index, 3))
    counts: Dict[str, int] = {}

    def save(image, folder: str, block_id: str, name: str) -> None:
        path = root / district.split / folder / block_id / name
        path.parent.mkdir(parents=True, exist_ok=True)
        writer.save_jpeg(image, path, render.JPEG_QUALITY)
        counts[folder] = counts.get(folder, 0) + 1

    for index, block in enumerate(district.blocks):
        satellite = render.satellite_tile(scene, block, size.image_px, rng_for(seed, SATELLITE_VIEW, split_index, index))
        drones = [
            render.drone_view(scene, block, size.image_px, rng_for(seed, DRONE_VIEW, split_index, index, view),
                              azimuth_slot=(view, size.drone_views))
            for view in range(size.drone_views)
        ]
        names = [f"image-{view + 1:02d}.jpeg" for view in range(size.drone_views)]
        if district.split == "train":
            save(satellite, "satellite", block.id, f"{block.id}.jpg")
            for image, name in zip(drones, names):
                save(image, "drone", block.id, name)
        else:
            save(satellite, "gallery_satellite", block.id, f"{block.id}.jpg")
            for image, name in zip(drones, names):
                save(image, "gallery_drone", block.id, name)
            if block.id in queries:
                save(satellite, "query_satellite", block.id, f"{block.id}.jpg")
                for image, name in zip(drones, names):
                    save(image, "query_drone", block.id, name)
        bar.update(1)
    return counts


def generate_cross_view(output: PathLike, size: str = "tiny", seed: int = 0, progress: bool = True) -> Path:
    """Render the cross-view set of ``size`` and ``seed`` at ``output`` (University-1652 layout).

    Rendered into ``<output>.tmp-<pid>`` and renamed into place when complete, so an
    interrupted run never leaves a partial set at ``output``.

    Raises:
        DataError: unknown size, bad seed, or ``output`` exists, is not empty and is not this set.
    """
    from tqdm import tqdm

    spec = get_cross_view_size(size)
    seed = _check_seed(seed)
    output = Path(output).expanduser()
    if _is_complete(output, spec.name, seed):
        return output
    if output.exists() and not writer.is_empty_dir(output):
        raise DataError(
            f"{output}: exists and is not an empty directory nor the synthetic cross-view set "
            f"'{spec.name}' seed {seed} v{CROSS_VIEW_VERSION}; choose another output or delete it"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = writer.temporary_sibling(output)
    writer.remove_tree(tmp)
    try:
        tmp.mkdir()
        districts = [plan_district(spec, split, seed) for split in SPLITS]
        counts = {}
        total = sum(len(d.blocks) for d in districts)
        with tqdm(total=total, desc=f"synthetic cross-view '{spec.name}' (seed {seed})", unit="block",
                  disable=not progress) as bar:
            for district in districts:
                counts[district.split] = _write_split(tmp, spec, seed, district, bar)
        manifest = {
            "format": MANIFEST_FORMAT, "complete": True, "version": CROSS_VIEW_VERSION, "size": spec.name,
            "seed": seed, "counts": counts,
            "parameters": {**asdict(spec), "drone_heading_spread_deg": DRONE_HEADING_SPREAD_DEG},
            "blocks": {d.split: len(d.blocks) for d in districts},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if not writer.publish(tmp, output) and not _is_complete(output, spec.name, seed):
            raise DataError(f"{output}: another process wrote something else there while the set was generated")
    finally:
        writer.remove_tree(tmp)
    return output


def cached_cross_view_path(size: str, seed: int, cache_dir: Optional[PathLike] = None) -> Path:
    """``<cache>/synthetic_cross_view/<size>-seed<seed>-v<version>``."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else writer.default_cache_dir()
    return root / "synthetic_cross_view" / f"{size}-seed{seed}-v{CROSS_VIEW_VERSION}"


def ensure_cross_view(size: str = "tiny", seed: int = 0, cache_dir: Optional[PathLike] = None, progress: bool = True) -> Path:
    """The cached cross-view set of ``size`` and ``seed``, generated on first use."""
    spec = get_cross_view_size(size)
    path = cached_cross_view_path(spec.name, _check_seed(seed), cache_dir)
    if _is_complete(path, spec.name, seed):
        return path
    return generate_cross_view(path, size=spec.name, seed=seed, progress=progress)


def azimuth(slot: Tuple[int, int], rng: np.random.Generator) -> float:
    """Bearing (radians clockwise from north, seen from the block) of the drone taking view
    ``slot = (k, n)``: n views evenly spread over ``DRONE_HEADING_SPREAD_DEG`` around due
    south (the camera then looks roughly north, as the tiles are oriented), jittered."""
    k, n = slot
    spread = math.radians(DRONE_HEADING_SPREAD_DEG)
    return math.pi + spread * ((k + float(rng.uniform(0.0, 1.0))) / n - 0.5)
