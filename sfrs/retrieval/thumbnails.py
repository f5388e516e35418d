"""One cell of a retrieval gallery: an image letterboxed into a frame, with a caption giving
its rank, descriptor distance and whether it is correct.

Correct and wrong differ in more than colour, for readers who cannot tell red from green
and for greyscale prints: a correct image has a solid green frame and ``OK`` in its
caption, a wrong one a dashed red frame and ``X``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Tuple

from PIL import Image, ImageDraw, ImageFont

GREEN = (40, 180, 60)
RED = (220, 40, 40)
GREY = (90, 90, 90)
NEUTRAL = (170, 170, 200)
WHITE = (255, 255, 255)
BAND = (0, 0, 0)

#: height of the caption strip under each image, in pixels.
CAPTION_HEIGHT = 12
#: dash and gap lengths of a wrong image's frame, in pixels.
DASH = (6, 4)


@dataclass(frozen=True)
class CellStyle:
    colour: Tuple[int, int, int]
    dashed: bool
    mark: str


STYLES = {
    "query": CellStyle(GREY, False, ""),
    "correct": CellStyle(GREEN, False, "OK"),
    "wrong": CellStyle(RED, True, "X"),
    "neutral": CellStyle(NEUTRAL, False, ""),  # no ground truth: neither correct nor wrong
}


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def caption(status: str, rank: Optional[int] = None, distance: Optional[float] = None) -> str:
    """``query``, or ``#<rank> [OK|X] d=<distance>`` (squared L2 between descriptors)."""
    if status == "query":
        return "query"
    parts = [f"#{rank}"] if rank is not None else []
    if STYLES[status].mark:
        parts.append(STYLES[status].mark)
    if distance is not None and math.isfinite(distance):
        parts.append(f"d={distance:.3g}")  # significant digits: untrained models give distances of 1e-4
    return " ".join(parts)


def letterbox(image: Image.Image, size: Tuple[int, int], fill: Tuple[int, int, int] = BAND) -> Image.Image:
    """``image`` scaled to fit (height, width) ``size`` with its aspect ratio kept, centred,
    the rest filled with ``fill`` (bands above and below, or left and right)."""
    height, width = size
    scale = min(width / image.width, height / image.height)
    fitted = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    cell = Image.new("RGB", (width, height), fill)
    cell.paste(image.convert("RGB").resize(fitted), ((width - fitted[0]) // 2, (height - fitted[1]) // 2))
    return cell


def _frame(draw: ImageDraw.ImageDraw, size: Tuple[int, int], colour, border: int, dashed: bool) -> None:
    height, width = size
    if not dashed:
        for inset in range(border):
            draw.rectangle([inset, inset, width - 1 - inset, height - 1 - inset], outline=colour)
        return
    on, off = DASH
    for start in range(0, max(width, height), on + off):
        if start < width:  # top and bottom edges
            stop = min(start + on, width) - 1
            draw.rectangle([start, 0, stop, border - 1], fill=colour)
            draw.rectangle([start, height - border, stop, height - 1], fill=colour)
        if start < height:  # left and right edges
            stop = min(start + on, height) - 1
            draw.rectangle([0, start, border - 1, stop], fill=colour)
            draw.rectangle([width - border, start, width - 1, stop], fill=colour)


def draw_cell(path: str, size: Tuple[int, int], status: str, text: str = "", border: int = 4) -> Image.Image:
    """A (height, width) ``size`` cell: the image at ``path`` letterboxed inside a frame of
    ``border`` pixels styled by ``status`` (query, correct, wrong, neutral), ``text`` below it."""
    height, width = size
    style = STYLES[status]
    caption_height = CAPTION_HEIGHT if text else 0
    inner = (height - 2 * border - caption_height, width - 2 * border)
    try:
        with Image.open(path) as source:
            picture = letterbox(source, inner)
    except OSError:  # a missing image must not break a report
        picture = Image.new("RGB", (inner[1], inner[0]), BAND)
    cell = Image.new("RGB", (width, height), WHITE)
    cell.paste(picture, (border, border))
    draw = ImageDraw.Draw(cell)
    _frame(draw, size, style.colour, border, style.dashed)
    if text:
        draw.text((border + 2, height - border - caption_height), text, fill=(0, 0, 0), font=_font())
    return cell
