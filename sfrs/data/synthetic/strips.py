"""Drawing a planned street side (``facades.plan_side``) as long strips, one per
appearance epoch: the background bands, each building with its windows, door, sign and
texture, and a label image (sky, windows by id) that night renders light from.

Strip coordinates as in ``facades.py``: ``X`` metres along the strip, ``Y`` metres above
the sidewalk.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from sfrs.data.synthetic.facades import (
    ALLEY, BOTTOM_M, FIRST_WINDOW_LABEL, KERB, KERB_BOTTOM_M, LABEL_OTHER, LABEL_SKY, LANE_LINE_M, PPM, RGB, ROAD,
    SIDEWALK, SIDEWALK_BOTTOM_M, SKY_HORIZON, SKY_TOP, STRIP_HEIGHT_PX, STYLES, TOP_M, Building, SidePlan, Sign, Strip,
    Style, jitter,
)


class _Canvas:
    """Metre-based drawing on the strip's colour and label images."""

    def __init__(self, rgb: Image.Image, label: Image.Image):
        self.rgb = ImageDraw.Draw(rgb)
        self.label = ImageDraw.Draw(label)

    @staticmethod
    def box(x0: float, y0: float, x1: float, y1: float) -> Tuple[int, int, int, int]:
        """Pixel box of the metre rectangle [x0, x1] x [y0, y1] (y up)."""
        return (
            int(round(x0 * PPM)),
            int(round((TOP_M - y1) * PPM)),
            max(int(round(x1 * PPM)) - 1, int(round(x0 * PPM))),
            max(int(round((TOP_M - y0) * PPM)) - 1, int(round((TOP_M - y1) * PPM))),
        )

    @staticmethod
    def point(x: float, y: float) -> Tuple[float, float]:
        return (x * PPM, (TOP_M - y) * PPM)

    def rect(self, x0, y0, x1, y1, fill: RGB, label: Optional[int] = None) -> None:
        b = self.box(x0, y0, x1, y1)
        self.rgb.rectangle(b, fill=fill)
        if label is not None:
            self.label.rectangle(b, fill=label)

    def polygon(self, points, fill: RGB, label: Optional[int] = None) -> None:
        pts = [self.point(x, y) for x, y in points]
        self.rgb.polygon(pts, fill=fill)
        if label is not None:
            self.label.polygon(pts, fill=label)

    def ellipse(self, x0, y0, x1, y1, fill: RGB, label: Optional[int] = None) -> None:
        b = self.box(x0, y0, x1, y1)
        self.rgb.ellipse(b, fill=fill)
        if label is not None:
            self.label.ellipse(b, fill=label)


def shade(colour: RGB, factor: float) -> RGB:
    """``colour`` scaled by ``factor`` (darker below 1), clipped to 0..255."""
    return tuple(int(min(255, max(0, round(c * factor)))) for c in colour)


def _background(width_px: int) -> Tuple[np.ndarray, np.ndarray]:
    """Sky gradient above the sidewalk, sidewalk, kerb, road and lane markings below (uint8)."""
    rows_y = TOP_M - (np.arange(STRIP_HEIGHT_PX) + 0.5) / PPM
    t = np.clip(rows_y / TOP_M, 0.0, 1.0)[:, None]
    column = (1 - t) * np.array(SKY_HORIZON) + t * np.array(SKY_TOP)
    bands = ((0.0, SIDEWALK_BOTTOM_M, SIDEWALK), (SIDEWALK_BOTTOM_M, KERB_BOTTOM_M, KERB), (KERB_BOTTOM_M, BOTTOM_M - 1, ROAD))
    for top, bottom, colour in bands:
        column[(rows_y < top) & (rows_y >= bottom)] = colour
    rgb = np.repeat(np.round(column).astype(np.uint8)[:, None, :], width_px, axis=1)
    label = np.where(rows_y < 0, LABEL_OTHER, LABEL_SKY).astype(np.uint8)
    label = np.repeat(label[:, None], width_px, axis=1)
    cols_x = (np.arange(width_px) + 0.5) / PPM
    sidewalk_rows = np.flatnonzero((rows_y < 0) & (rows_y >= SIDEWALK_BOTTOM_M))
    joint_cols = np.flatnonzero(np.mod(cols_x, 1.5) < 1.0 / PPM)
    rgb[np.ix_(sidewalk_rows, joint_cols)] = np.round(np.array(SIDEWALK) * 0.8).astype(np.uint8)
    lane_rows = np.flatnonzero((rows_y >= LANE_LINE_M[0]) & (rows_y < LANE_LINE_M[1]))
    dash_cols = np.flatnonzero(np.mod(cols_x, 9.0) < 3.0)
    rgb[np.ix_(lane_rows, dash_cols)] = (225, 225, 215)
    return rgb, label


def _texture_factor(b: Building) -> Optional[Tuple[int, int, int, int, np.ndarray]]:
    """Mortar lines / panel joints / weathering of ``b``'s wall as a brightness factor.

    Returns ``(r0, r1, c0, c1, factor)`` with ``factor`` of shape (r1 - r0, c1 - c0), or
    None when the building is outside the strip. The factor does not depend on the
    wall colour, so one computation serves both epochs.
    """
    style = STYLES[b.style]
    c0, r0, c1, r1 = _Canvas.box(b.x0, 0.0, b.x1, b.height_m)
    c0, c1, r1 = max(c0, 0), c1 + 1, r1 + 1
    if c1 <= c0:
        return None
    rows = (r1 - 1 - np.arange(r0, r1, dtype=np.float32))[:, None]  # px above the sidewalk
    cols = (np.arange(c0, c1, dtype=np.float32) - round(b.x0 * PPM))[None, :]
    rng = np.random.default_rng(b.detail_seed)
    factor = np.ones((r1 - r0, c1 - c0), dtype=np.float32)
    if style.texture in ("brick", "stone"):
        # Staggered courses with a random tone per brick / block.
        course_px, unit_px, line, tone = (6, 12, 0.78, (0.92, 1.06)) if style.texture == "brick" else (10, 20, 0.8, (0.9, 1.08))
        course = np.floor(rows / course_px)
        shifted = cols + (unit_px // 2) * np.mod(course, 2)
        factor = np.where(np.mod(rows, course_px) < 1, line, factor)
        factor = np.where(np.mod(shifted, unit_px) < 1, 0.85 if style.texture == "brick" else line, factor)
        tones = rng.uniform(*tone, (int(course.max()) + 2, int(cols.max() // unit_px) + 3)).astype(np.float32)
        factor = factor * tones[course.astype(int), (shifted // unit_px).astype(int)]
    elif style.texture == "siding":
        factor = np.where(np.mod(rows, 7) < 1, 0.82, np.where(np.mod(rows, 7) < 3, 0.96, 1.0)).astype(np.float32) * factor
    elif style.texture == "panels":
        factor = np.where(np.mod(rows, style.floor_m * PPM) < 2, 0.72, factor)
        factor = np.where(np.mod(cols, style.pitch_m * PPM) < 2, 0.78, factor)
    # Weathering: walls darken towards the street.
    factor = factor * (0.9 + 0.1 * np.clip(rows / (3.0 * PPM), 0.0, 1.0))
    return r0, r1, c0, c1, factor.astype(np.float32)


def _apply_texture(arr: np.ndarray, b: Building, texture: Tuple[int, int, int, int, np.ndarray]) -> None:
    """Shade the wall pixels of ``b`` in ``arr`` (uint8, in place) by its texture factor."""
    r0, r1, c0, c1, factor = texture
    block = arr[r0:r1, c0:c1]  # a view: writing it writes the strip
    factor = factor[: block.shape[0], : block.shape[1]]
    wall = np.array(b.wall, dtype=np.uint8)
    wall_mask = (block[..., 0] == wall[0]) & (block[..., 1] == wall[1]) & (block[..., 2] == wall[2])
    # Wall pixels all hold the wall colour, so their shaded value is wall * factor.
    shaded = np.clip(np.round(factor[..., None] * wall.astype(np.float32)), 0, 255).astype(np.uint8)
    np.copyto(block, shaded, where=wall_mask[..., None])


def _draw_glyphs(canvas: _Canvas, x0: float, y0: float, x1: float, y1: float, sign: Sign) -> None:
    n = len(sign.glyphs)
    cell = (x1 - x0) / n
    for i, code in enumerate(sign.glyphs):
        gx0, gx1 = x0 + (i + 0.15) * cell, x0 + (i + 0.85) * cell
        gy0, gy1 = y0 + 0.18 * (y1 - y0), y1 - 0.18 * (y1 - y0)
        mx, my = (gx0 + gx1) / 2, (gy0 + gy1) / 2
        if code == 0:
            canvas.rect(gx0, gy0, gx1, gy1, sign.ink)
        elif code == 1:
            canvas.ellipse(gx0, gy0, gx1, gy1, sign.ink)
        elif code == 2:
            canvas.polygon([(gx0, gy0), (gx1, gy0), (mx, gy1)], sign.ink)
        elif code == 3:
            canvas.rect(gx0, gy1 - 0.25 * (gy1 - gy0), gx1, gy1, sign.ink)
            canvas.rect(mx - 0.15 * cell, gy0, mx + 0.15 * cell, gy1, sign.ink)
        elif code == 4:
            canvas.rect(gx0, gy0, gx0 + 0.3 * (gx1 - gx0), gy1, sign.ink)
            canvas.rect(gx0, gy0, gx1, gy0 + 0.3 * (gy1 - gy0), sign.ink)
        else:
            canvas.rect(gx0, gy0, gx1, gy0 + 0.3 * (gy1 - gy0), sign.ink)
            canvas.rect(gx0, my, gx1, my + 0.3 * (gy1 - gy0), sign.ink)


class _WindowIds:
    """Hands out window label ids 2..255 cyclically (night renders light a subset by id)."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> int:
        self.count += 1
        return FIRST_WINDOW_LABEL + (self.count % (256 - FIRST_WINDOW_LABEL))


def _window(
    canvas: _Canvas, style: Style, b: Building, cx: float, sill: float, rng: np.random.Generator, ids: _WindowIds
) -> None:
    """One window centred at ``cx`` with its sill at ``sill`` metres (frame, pane, sill, shutters)."""
    w, h = style.window
    f = 0.09
    glass = jitter(rng, style.glass, 6.0)
    if rng.random() < 0.2:  # drawn curtains: a detail unique to this window
        glass = jitter(rng, (200, 190, 170), 20.0)
    if b.shutters is not None:
        canvas.rect(cx - w / 2 - w / 2 - f, sill, cx - w / 2 - f, sill + h, b.shutters)
        canvas.rect(cx + w / 2 + f, sill, cx + w / 2 + w / 2 + f, sill + h, b.shutters)
    if style.window_kind == "arched":
        canvas.rect(cx - w / 2 - f, sill - f, cx + w / 2 + f, sill + h - w / 2, style.frame)
        canvas.ellipse(cx - w / 2 - f, sill + h - w - f, cx + w / 2 + f, sill + h + f, style.frame)
        label = ids.next()
        canvas.rect(cx - w / 2, sill, cx + w / 2, sill + h - w / 2, glass, label)
        canvas.ellipse(cx - w / 2, sill + h - w, cx + w / 2, sill + h, glass, label)
    else:
        canvas.rect(cx - w / 2 - f, sill - f, cx + w / 2 + f, sill + h + f, style.frame)
        canvas.rect(cx - w / 2, sill, cx + w / 2, sill + h, glass, ids.next())
        canvas.rect(cx - 0.03, sill, cx + 0.03, sill + h, style.frame)
        if style.window_kind == "tall":
            canvas.rect(cx - w / 2, sill + 0.7 * h, cx + w / 2, sill + 0.7 * h + 0.06, style.frame)
    canvas.rect(cx - w / 2 - 0.15, sill - 0.2, cx + w / 2 + 0.15, sill - f, style.trim)


def _draw_building(canvas: _Canvas, b: Building, ids: _WindowIds) -> None:
    """Windows, doors, signs, awnings and balconies of ``b`` (walls are already drawn)."""
    style = STYLES[b.style]
    rng = np.random.default_rng(b.detail_seed + 1)
    width = b.x1 - b.x0
    bay = width / b.bays
    centres = [b.x0 + (i + 0.5) * bay for i in range(b.bays)]
    w, h = style.window

    for floor in range(1, b.floors):
        base = b.ground_m + (floor - 1) * style.floor_m
        sill = base + (style.floor_m - h) * 0.55
        if style.window_kind == "band":
            canvas.rect(b.x0 + 0.3, sill - 0.1, b.x1 - 0.3, sill + h + 0.1, style.frame)
            canvas.rect(b.x0 + 0.4, sill, b.x1 - 0.4, sill + h, jitter(rng, style.glass, 5.0), ids.next())
            for mx in np.arange(b.x0 + 0.4 + style.pitch_m / 2, b.x1 - 0.4, style.pitch_m / 2):
                canvas.rect(mx - 0.04, sill, mx + 0.04, sill + h, style.frame)
        else:
            for cx in centres:
                _window(canvas, style, b, cx, sill, rng, ids)
        if b.balconies:
            for cx in centres:
                canvas.rect(cx - w / 2 - 0.3, base - 0.05, cx + w / 2 + 0.3, base + 0.1, (70, 70, 74))
                canvas.rect(cx - w / 2 - 0.3, base + 0.9, cx + w / 2 + 0.3, base + 1.0, (50, 50, 54))
                for bx in np.arange(cx - w / 2 - 0.3, cx + w / 2 + 0.31, 0.25):
                    canvas.rect(bx - 0.025, base, bx + 0.025, base + 0.95, (50, 50, 54))

    door_cx = centres[b.door_bay]
    if style.ground == "shop":
        top = b.ground_m - 1.0
        for i, cx in enumerate(centres):
            if i == b.door_bay:
                continue
            canvas.rect(cx - bay / 2 + 0.2, 0.4, cx + bay / 2 - 0.2, top - 0.2, style.frame)
            canvas.rect(cx - bay / 2 + 0.3, 0.5, cx + bay / 2 - 0.3, top - 0.3, jitter(rng, (70, 80, 90), 12.0), ids.next())
        canvas.rect(door_cx - 0.6, 0.0, door_cx + 0.6, 2.4, b.door)
        canvas.rect(door_cx - 0.45, 1.1, door_cx + 0.45, 2.25, (60, 70, 82), ids.next())
        if b.awning is not None:
            stripe = 0.5
            for k, sx in enumerate(np.arange(b.x0 + 0.1, b.x1 - 0.1, stripe)):
                colour = b.awning[k % 2]
                ex = min(sx + stripe, b.x1 - 0.1)
                canvas.polygon([(sx, top), (ex, top), (ex + 0.05, top - 0.55), (sx + 0.05, top - 0.55)], colour)
    elif style.ground == "office":
        canvas.rect(b.x0 + 0.2, 0.2, b.x1 - 0.2, b.ground_m - 0.6, style.frame)
        canvas.rect(b.x0 + 0.3, 0.3, b.x1 - 0.3, b.ground_m - 0.7, jitter(rng, style.glass, 8.0), ids.next())
        for mx in np.arange(b.x0 + 1.5, b.x1 - 0.3, 1.5):
            canvas.rect(mx - 0.05, 0.3, mx + 0.05, b.ground_m - 0.7, style.frame)
        canvas.rect(door_cx - 1.0, 0.0, door_cx + 1.0, 2.6, (35, 40, 46))
    elif style.ground == "garage":
        gw = min(3.0, bay * 0.9)
        gh = min(3.2, b.ground_m - 0.6)
        canvas.rect(door_cx - gw / 2, 0.0, door_cx + gw / 2, gh, shade(b.door, 1.4))
        for sy in np.arange(0.3, gh, 0.3):
            canvas.rect(door_cx - gw / 2, sy, door_cx + gw / 2, sy + 0.04, shade(b.door, 0.9))
        for i, cx in enumerate(centres):
            if i != b.door_bay and abs(cx - door_cx) > gw / 2 + 0.8:
                _window(canvas, style, b, cx, 1.1, rng, ids)
    else:
        for i, cx in enumerate(centres):
            if i == b.door_bay:
                canvas.rect(cx - 0.55, 0.0, cx + 0.55, 2.25, b.door)
                canvas.rect(cx - 0.7, 0.0, cx + 0.7, 0.15, style.trim)
            else:
                _window(canvas, style, b, cx, 0.9, rng, ids)

    if b.sign is not None:
        sign = b.sign
        top = b.ground_m - 0.15
        sw = sign.width_frac * width
        sx0 = b.x0 + (width - sw) * (0.5 if style.ground != "garage" else 0.2)
        if sign.board is not None:
            canvas.rect(sx0, top - 0.8, sx0 + sw, top, sign.board)
        _draw_glyphs(canvas, sx0 + 0.1, top - 0.75, sx0 + sw - 0.1, top - 0.05, sign)


def render_strips(plan: SidePlan, epochs: Sequence[int] = (0, 1)) -> List[Strip]:
    """Render a street side at database time (epoch 0) and/or query time (epoch 1).

    Returns:
        One :class:`Strip` per epoch, of ``STRIP_HEIGHT_PX`` rows and ``length_m * PPM``
        columns; its label image holds ``LABEL_SKY`` on sky, window ids on windows, 0
        elsewhere.
    """
    width_px = int(math.ceil(plan.length_m * PPM))
    background_rgb, background_label = _background(width_px)
    textures = [_texture_factor(b) for b in plan.buildings]
    return [_render_epoch(plan, epoch, background_rgb, background_label, textures) for epoch in epochs]


def _render_epoch(plan: SidePlan, epoch: int, background_rgb: np.ndarray, background_label: np.ndarray, textures) -> Strip:
    buildings = [b.at_epoch(epoch) for b in plan.buildings]
    rgb_img = Image.fromarray(background_rgb)
    label_img = Image.fromarray(background_label.copy())  # drawn on: never share the background
    canvas = _Canvas(rgb_img, label_img)
    for i, b in enumerate(buildings):
        style = STYLES[b.style]
        if i + 1 < len(buildings) and buildings[i + 1].x0 > b.x1:
            top = 0.75 * min(b.height_m, buildings[i + 1].height_m)
            canvas.rect(b.x1, 0.0, buildings[i + 1].x0, top, ALLEY, LABEL_OTHER)
        canvas.rect(b.x0, 0.0, b.x1, b.height_m, b.wall, LABEL_OTHER)
        for rx, rw, rh in b.rooftop:
            canvas.rect(b.x0 + rx, b.height_m, b.x0 + rx + rw, b.height_m + rh, shade(b.wall, 0.7), LABEL_OTHER)
        if style.roof == "gable":
            peak = min(0.35 * (b.x1 - b.x0), 3.5)
            roof = (110, 60, 50) if b.style % 2 else (70, 72, 80)
            gable = [(b.x0 - 0.3, b.height_m), (b.x1 + 0.3, b.height_m), ((b.x0 + b.x1) / 2, b.height_m + peak)]
            canvas.polygon(gable, roof, LABEL_OTHER)

    arr = np.array(rgb_img)
    for b, texture in zip(buildings, textures):
        if texture is not None:
            _apply_texture(arr, b, texture)
    rgb_img = Image.fromarray(arr)
    canvas = _Canvas(rgb_img, label_img)
    ids = _WindowIds()
    for b in buildings:
        style = STYLES[b.style]
        if style.roof == "cornice":
            canvas.rect(b.x0 - 0.2, b.height_m - 0.45, b.x1 + 0.2, b.height_m, style.trim, LABEL_OTHER)
            canvas.rect(b.x0 - 0.2, b.height_m - 0.55, b.x1 + 0.2, b.height_m - 0.45, shade(style.trim, 0.7), LABEL_OTHER)
        elif style.roof == "parapet":
            canvas.rect(b.x0, b.height_m, b.x1, b.height_m + 0.6, shade(b.wall, 1.12), LABEL_OTHER)
        elif style.roof == "flat":
            canvas.rect(b.x0, b.height_m - 0.15, b.x1, b.height_m, shade(b.wall, 0.6), LABEL_OTHER)
        canvas.rect(b.x0, b.ground_m - 0.1, b.x1, b.ground_m, shade(b.wall, 0.8))
        _draw_building(canvas, b, ids)
    return Strip(rgb=rgb_img, label=label_img, length_m=plan.length_m)
