"""Facade styles and the plan of a street side: its buildings, signs and street furniture.

A street side is one flat strip in which every building, the sidewalk and the road band
are drawn once (``strips.py``); cameras then look at windows of it (``render.py``). Buildings are drawn
from a small palette of styles reused across the whole city, so distant places look
alike (perceptual aliasing), while each building keeps its own details (colour, window
count, door position, shop sign) that disambiguate it.

Street furniture in front of the facade (lamps, trees, bins) is planned here too but
drawn per view, because its parallax depends on the camera.

Strip coordinates: ``X`` metres along the strip (left to right as seen by a camera
facing it), ``Y`` metres above the sidewalk; negative ``Y`` is the ground band.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

RGB = Tuple[int, int, int]

PPM = 16  # strip pixels per metre: twice the final image's scale at the nominal distance
TOP_M = 28.0
BOTTOM_M = -12.0  # low enough for the bottom corners of pitched-down, close-up views
STRIP_HEIGHT_PX = int(round((TOP_M - BOTTOM_M) * PPM))

LABEL_OTHER = 0
LABEL_SKY = 1
FIRST_WINDOW_LABEL = 2  # windows carry ids 2..255 so night renders can light a random subset

SKY_TOP: RGB = (96, 146, 212)
SKY_HORIZON: RGB = (188, 210, 234)
SIDEWALK: RGB = (170, 167, 160)
KERB: RGB = (125, 124, 120)
ROAD: RGB = (78, 79, 84)
ALLEY: RGB = (58, 60, 66)

SIDEWALK_BOTTOM_M = -1.0
KERB_BOTTOM_M = -1.15
LANE_LINE_M = (-2.75, -2.6)


@dataclass(frozen=True)
class Style:
    """A facade type reused across the city.

    Attributes:
        name: short description.
        walls: palette of wall colours (one per building, then jittered).
        texture: ``plain``, ``brick``, ``siding``, ``panels`` or ``stone``.
        floor_m: storey height; window: (width, height) in metres; pitch_m: bay width.
        window_kind: ``rect``, ``tall``, ``arched`` or ``band`` (ribbon windows).
        frame / glass / trim: colours of window frames, panes, cornices and sills.
        ground: ground floor type: ``shop``, ``house``, ``garage`` or ``office``.
        roof: ``flat``, ``cornice``, ``parapet`` or ``gable``.
        floors: inclusive range of storeys; width_m: range of building widths.
        balcony: probability that a building of this style has balconies.
        shutters: probability of window shutters.
    """

    name: str
    walls: Tuple[RGB, ...]
    texture: str
    floor_m: float
    window: Tuple[float, float]
    pitch_m: float
    window_kind: str
    frame: RGB
    glass: RGB
    trim: RGB
    ground: str
    roof: str
    floors: Tuple[int, int]
    width_m: Tuple[float, float]
    balcony: float = 0.0
    shutters: float = 0.0


STYLES: Tuple[Style, ...] = (
    Style("brick row house", ((150, 72, 58), (128, 62, 50), (165, 95, 70)), "brick", 3.1, (1.0, 1.45), 2.2,
          "rect", (235, 232, 225), (52, 62, 78), (215, 210, 200), "house", "cornice", (2, 4), (6.0, 10.0)),
    Style("brownstone", ((122, 88, 68), (140, 104, 80), (104, 78, 62)), "stone", 3.3, (0.95, 1.8), 2.1,
          "tall", (60, 45, 35), (40, 48, 60), (175, 150, 120), "house", "cornice", (3, 5), (6.0, 9.0)),
    Style("plaster shops", ((232, 220, 180), (236, 200, 190), (205, 225, 200), (240, 235, 225)), "plain", 3.0,
          (1.0, 1.3), 2.4, "rect", (250, 250, 250), (60, 72, 88), (190, 185, 175), "shop", "parapet", (2, 4),
          (8.0, 16.0), 0.0, 0.5),
    Style("glass office", ((150, 158, 168), (118, 128, 140), (170, 170, 165)), "panels", 3.6, (1.4, 1.6), 1.8,
          "band", (90, 96, 104), (70, 96, 122), (130, 135, 140), "office", "flat", (4, 6), (14.0, 20.0)),
    Style("gabled house", ((236, 236, 230), (190, 212, 226), (200, 222, 190), (236, 220, 170)), "siding", 2.9,
          (0.9, 1.2), 2.6, "rect", (255, 255, 255), (55, 66, 80), (120, 60, 50), "house", "gable", (2, 3),
          (6.0, 9.0), 0.0, 0.6),
    Style("warehouse", ((112, 52, 46), (96, 92, 90), (136, 84, 60)), "brick", 4.2, (2.2, 1.4), 3.6,
          "rect", (40, 40, 42), (70, 80, 86), (90, 88, 86), "garage", "parapet", (2, 3), (12.0, 20.0)),
    Style("art deco", ((218, 206, 182), (200, 200, 196), (226, 214, 196)), "plain", 3.4, (1.0, 1.7), 2.2,
          "arched", (120, 110, 95), (48, 58, 72), (160, 150, 130), "shop", "cornice", (4, 6), (10.0, 18.0)),
    Style("modern flats", ((238, 238, 236), (196, 198, 200), (214, 172, 102), (170, 96, 80)), "panels", 2.9,
          (1.7, 1.4), 3.0, "rect", (60, 60, 64), (56, 70, 86), (80, 80, 84), "shop", "flat", (4, 6),
          (12.0, 20.0), 0.7),
    Style("victorian", ((60, 132, 128), (150, 96, 140), (222, 186, 70), (96, 120, 170)), "siding", 3.2,
          (0.8, 1.7), 1.9, "tall", (245, 242, 236), (45, 52, 64), (245, 242, 236), "house", "gable", (2, 3),
          (6.0, 9.0), 0.0, 0.3),
    Style("concrete block", ((150, 150, 146), (172, 168, 158), (128, 130, 132)), "stone", 3.0, (0.8, 0.9), 2.0,
          "rect", (90, 90, 90), (44, 50, 58), (110, 110, 108), "garage", "flat", (3, 5), (10.0, 18.0)),
)
# Some styles are far more common, as in real cities: aliasing concentrates on them.
STYLE_WEIGHTS = np.array([1.6, 1.2, 1.6, 0.8, 1.0, 0.7, 0.9, 1.0, 0.8, 0.8])
STYLE_WEIGHTS = STYLE_WEIGHTS / STYLE_WEIGHTS.sum()
SAME_STYLE_AS_NEIGHBOUR = 0.35  # terraces: runs of identical-style buildings

SIGN_COLOURS: Tuple[RGB, ...] = (
    (200, 30, 36), (240, 200, 30), (30, 120, 60), (30, 70, 160), (25, 25, 28),
    (245, 245, 240), (235, 120, 20), (120, 40, 130), (0, 150, 160),
)
AWNING_COLOURS: Tuple[RGB, ...] = ((180, 30, 40), (30, 90, 50), (30, 50, 120), (230, 180, 40), (90, 60, 40))
DOOR_COLOURS: Tuple[RGB, ...] = ((90, 50, 30), (30, 40, 60), (120, 20, 30), (40, 70, 50), (30, 30, 30))
CHANGE_PROBABILITY = 0.18  # buildings that look different at query time (repaint, new sign, awning)


@dataclass(frozen=True)
class Sign:
    """A shop sign: a coloured board (or bare letters when ``board`` is None) with glyphs."""

    board: Optional[RGB]
    ink: RGB
    glyphs: Tuple[int, ...]
    width_frac: float


@dataclass(frozen=True)
class Building:
    """One building of a street side, in strip metres. ``alt_*`` hold its query-time look."""

    x0: float
    x1: float
    style: int
    wall: RGB
    floors: int
    ground_m: float
    bays: int
    door_bay: int
    door: RGB
    sign: Optional[Sign]
    awning: Optional[Tuple[RGB, RGB]]
    rooftop: Tuple[Tuple[float, float, float], ...]
    balconies: bool
    shutters: Optional[RGB]
    detail_seed: int
    change: str = ""
    alt_wall: Optional[RGB] = None
    alt_sign: Optional[Sign] = None
    alt_awning: Optional[Tuple[RGB, RGB]] = None

    @property
    def height_m(self) -> float:
        """Height of the wall (without roof, parapet or rooftop structures)."""
        return self.ground_m + (self.floors - 1) * STYLES[self.style].floor_m

    def at_epoch(self, epoch: int) -> "Building":
        """The building at database time (0) or at query time (1)."""
        if epoch == 0 or not self.change:
            return self
        if self.change == "repaint":
            return replace(self, wall=self.alt_wall)
        if self.change == "sign":
            return replace(self, sign=self.alt_sign)
        return replace(self, awning=self.alt_awning)


@dataclass(frozen=True)
class Prop:
    """Street furniture standing ``depth_m`` in front of the facade (closer to the camera)."""

    kind: str  # lamp | tree | bin
    x: float
    depth_m: float
    height_m: float
    size_m: float
    colour: RGB


@dataclass(frozen=True)
class SidePlan:
    """Everything along one street side."""

    length_m: float
    buildings: Tuple[Building, ...]
    props: Tuple[Prop, ...]


@dataclass(frozen=True)
class Strip:
    """A rendered street side: colour image and per-pixel labels (sky / window ids)."""

    rgb: Image.Image
    label: Image.Image
    length_m: float


def jitter(rng: np.random.Generator, colour: RGB, amount: float) -> RGB:
    return tuple(int(v) for v in np.clip(np.asarray(colour) + rng.normal(0.0, amount, 3), 0, 255))


def _sign(rng: np.random.Generator, board: bool = True) -> Sign:
    board_colour = SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))] if board else None
    inks = [(250, 250, 250), (20, 20, 20), (250, 215, 40)]
    if board_colour is not None:
        # Legible ink: the one farthest from the board colour.
        ink = max(inks, key=lambda c: sum(abs(a - b) for a, b in zip(c, board_colour)))
    else:
        ink = inks[rng.integers(len(inks))] if rng.random() < 0.5 else SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))]
    n = int(rng.integers(3, 10))
    return Sign(board_colour, ink, tuple(int(g) for g in rng.integers(0, 6, n)), float(rng.uniform(0.45, 0.9)))


def _plan_building(rng: np.random.Generator, style_index: int, x0: float, x1: float) -> Building:
    style = STYLES[style_index]
    width = x1 - x0
    floors = int(rng.integers(style.floors[0], style.floors[1] + 1))
    bays = max(1, int(round(width / style.pitch_m + rng.normal(0.0, 0.4))))
    ground_m = style.floor_m * (1.3 if style.ground in ("shop", "office") else 1.0)
    sign = None
    if style.ground == "shop" or (style.ground == "garage" and rng.random() < 0.5):
        sign = _sign(rng)
    elif style.ground == "office" and rng.random() < 0.7:
        sign = _sign(rng, board=False)
    awning = None
    if style.ground == "shop" and rng.random() < 0.5:
        awning = (AWNING_COLOURS[rng.integers(len(AWNING_COLOURS))], (240, 240, 235))
    rooftop = []
    if style.roof != "gable" and rng.random() < 0.35:
        for _ in range(int(rng.integers(1, 3))):
            w = float(rng.uniform(0.6, 2.5))
            rooftop.append((float(rng.uniform(0.5, max(0.6, width - w - 0.5))), w, float(rng.uniform(0.8, 2.2))))
    shutters = None
    if rng.random() < style.shutters:
        shutters = jitter(rng, ((40, 80, 50), (90, 40, 40), (40, 60, 100), (70, 70, 70))[rng.integers(4)], 10)
    building = Building(
        x0=x0,
        x1=x1,
        style=style_index,
        wall=jitter(rng, style.walls[rng.integers(len(style.walls))], 12.0),
        floors=floors,
        ground_m=ground_m,
        bays=bays,
        door_bay=int(rng.integers(bays)),
        door=DOOR_COLOURS[rng.integers(len(DOOR_COLOURS))],
        sign=sign,
        awning=awning,
        rooftop=tuple(rooftop),
        balconies=bool(rng.random() < style.balcony),
        shutters=shutters,
        detail_seed=int(rng.integers(2**31)),
    )
    if rng.random() < CHANGE_PROBABILITY:
        options = ["repaint"] + (["sign", "sign"] if sign is not None else []) + (["awning"] if style.ground == "shop" else [])
        change = options[rng.integers(len(options))]
        if change == "repaint":
            repaint = jitter(rng, style.walls[rng.integers(len(style.walls))], 25.0)
            building = replace(building, change=change, alt_wall=repaint)
        elif change == "sign":
            building = replace(building, change=change, alt_sign=_sign(rng, board=sign.board is not None))
        else:
            alt = None if awning is not None else (AWNING_COLOURS[rng.integers(len(AWNING_COLOURS))], (240, 240, 235))
            building = replace(building, change=change, alt_awning=alt)
    return building


def plan_side(rng: np.random.Generator, length_m: float) -> SidePlan:
    """Buildings and street furniture along a street side of ``length_m`` metres."""
    buildings: List[Building] = []
    x = float(rng.uniform(-4.0, 0.0))
    style = -1
    while x < length_m:
        if style < 0 or rng.random() >= SAME_STYLE_AS_NEIGHBOUR:
            style = int(rng.choice(len(STYLES), p=STYLE_WEIGHTS))
        width = float(rng.uniform(*STYLES[style].width_m))
        buildings.append(_plan_building(rng, style, x, x + width))
        x += width
        if rng.random() < 0.25:
            x += float(rng.uniform(0.8, 2.5))  # an alley between buildings

    props: List[Prop] = []
    spacing = float(rng.uniform(22.0, 30.0))
    lamp_colour = ((50, 55, 60), (30, 60, 40), (20, 20, 24))[rng.integers(3)]
    lamps = np.arange(rng.uniform(0.0, spacing), length_m, spacing)
    for lx in lamps:
        props.append(Prop("lamp", float(lx), 3.2, float(rng.uniform(5.8, 6.6)), 0.35, lamp_colour))
    for slot in np.arange(0.0, length_m, 7.0):
        if rng.random() < 0.3:
            tx = float(slot + rng.uniform(0.0, 5.0))
            if np.min(np.abs(lamps - tx), initial=99.0) > 1.5:
                green = jitter(rng, (70, 120, 55), 14.0)
                props.append(Prop("tree", tx, 3.0, float(rng.uniform(2.2, 3.2)), float(rng.uniform(1.2, 2.2)), green))
        if rng.random() < 0.1:
            colour = ((40, 80, 50), (40, 60, 110), (150, 40, 40), (60, 60, 60))[rng.integers(4)]
            props.append(Prop("bin", float(slot + rng.uniform(0.0, 5.0)), 2.6, 0.9, 0.5, colour))
    return SidePlan(length_m=float(length_m), buildings=tuple(buildings), props=tuple(props))
