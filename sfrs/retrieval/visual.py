"""Retrieval examples as an image grid: a query, then its top-k, correct ones framed green."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from sfrs.data.geo import Split

GREEN = (40, 180, 60)
RED = (220, 40, 40)
GREY = (90, 90, 90)


def _thumbnail(path: str, size: Tuple[int, int], colour, border: int) -> Image.Image:
    height, width = size
    try:
        image = Image.open(path).convert("RGB").resize((width - 2 * border, height - 2 * border))
    except OSError:  # a missing image must not break a report
        image = Image.new("RGB", (width - 2 * border, height - 2 * border), (0, 0, 0))
    framed = Image.new("RGB", (width, height), colour)
    framed.paste(image, (border, border))
    return framed


def retrieval_grid(
    split: Split,
    query_rows: Sequence[int],
    predictions: np.ndarray,
    positives: Sequence[np.ndarray],
    thumb: Tuple[int, int] = (120, 160),
    border: int = 4,
) -> np.ndarray:
    """(H, W, 3) uint8: one row per query: the query (grey frame) and its retrieved
    database images (green frame = within the positive radius, red = wrong).

    ``predictions`` has one row per entry of ``query_rows`` (database ids, -1 = none).
    """
    height, width = thumb
    k = predictions.shape[1]
    gap = 6
    canvas = Image.new("RGB", ((k + 1) * width + k * 2 + gap, len(query_rows) * (height + 2)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (q, row) in enumerate(zip(query_rows, predictions)):
        y = r * (height + 2)
        canvas.paste(_thumbnail(split.query_paths[q], thumb, GREY, border), (0, y))
        good = set(np.asarray(positives[q]).tolist())
        for j, db in enumerate(row):
            x = width + gap + j * (width + 2)
            if db < 0:
                continue
            colour = GREEN if int(db) in good else RED
            canvas.paste(_thumbnail(split.database_paths[int(db)], thumb, colour, border), (x, y))
        draw.line([(width + gap // 2, y), (width + gap // 2, y + height)], fill=(0, 0, 0), width=1)
    return np.asarray(canvas)
