"""Retrieval examples as an image grid: a query, then its top-k, correct ones framed green.

Labelled splits frame each retrieved image green (within the positive radius) or red;
unlabelled retrieval (no coordinates) uses a neutral frame.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from sfrs.data import Split
from sfrs.retrieval.recall import per_query_first_correct_rank
from sfrs.utils.io import atomic_path

GREEN = (40, 180, 60)
RED = (220, 40, 40)
GREY = (90, 90, 90)
NEUTRAL = (170, 170, 200)


def _thumbnail(path: str, size: Tuple[int, int], colour, border: int) -> Image.Image:
    height, width = size
    try:
        image = Image.open(path).convert("RGB").resize((width - 2 * border, height - 2 * border))
    except OSError:  # a missing image must not break a report
        image = Image.new("RGB", (width - 2 * border, height - 2 * border), (0, 0, 0))
    framed = Image.new("RGB", (width, height), colour)
    framed.paste(image, (border, border))
    return framed


def path_grid(
    query_paths: Sequence[str],
    database_paths: Sequence[str],
    predictions: np.ndarray,
    correct: Optional[np.ndarray] = None,
    thumb: Tuple[int, int] = (120, 160),
    border: int = 4,
) -> np.ndarray:
    """(H, W, 3) uint8: one row per query: the query (grey frame), then its retrieved images.

    Args:
        query_paths: R query images, one per grid row.
        database_paths: all database images (indexed by ``predictions``).
        predictions: (R, k) database indices, best first; -1 leaves a blank cell.
        correct: (R, k) bool (green / red frames), or None for neutral frames (unlabelled).
        thumb: (height, width) of a cell.
    """
    height, width = thumb
    predictions = np.asarray(predictions).reshape(len(query_paths), -1)
    k = predictions.shape[1]
    gap = 6
    canvas = Image.new("RGB", ((k + 1) * width + k * 2 + gap, len(query_paths) * (height + 2)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (query, row) in enumerate(zip(query_paths, predictions)):
        y = r * (height + 2)
        canvas.paste(_thumbnail(query, thumb, GREY, border), (0, y))
        for j, db in enumerate(row):
            if db < 0:
                continue
            colour = NEUTRAL if correct is None else (GREEN if correct[r, j] else RED)
            x = width + gap + j * (width + 2)
            canvas.paste(_thumbnail(database_paths[int(db)], thumb, colour, border), (x, y))
        draw.line([(width + gap // 2, y), (width + gap // 2, y + height)], fill=(0, 0, 0), width=1)
    return np.asarray(canvas)


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

    ``predictions`` has one row per entry of ``query_rows`` (database ids, -1 = none);
    ``positives`` is indexed by query id (all Q queries of the split).
    """
    predictions = np.asarray(predictions)
    correct = np.array(
        [np.isin(row, np.asarray(positives[q])) & (row >= 0) for q, row in zip(query_rows, predictions)], dtype=bool,
    ).reshape(predictions.shape)
    return path_grid([split.query_paths[q] for q in query_rows], split.database_paths, predictions, correct, thumb, border)


def example_queries(num_queries: int, count: int) -> np.ndarray:
    """Up to ``count`` query ids spread evenly over the split (deterministic)."""
    count = min(int(count), int(num_queries))
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, num_queries - 1, num=count).round().astype(np.int64))


def failure_queries(predictions: np.ndarray, positives: Sequence[np.ndarray], count: int) -> np.ndarray:
    """Up to ``count`` query ids wrong at Recall@1, spread evenly over all such queries.

    Queries without any positive are left out: they show the data set, not the model.
    """
    ranks = per_query_first_correct_rank(np.asarray(predictions)[:, :1], positives)
    has_positive = np.array([len(p) > 0 for p in positives], dtype=bool)
    wrong = np.flatnonzero((ranks != 0) & has_positive)
    return wrong[example_queries(len(wrong), count)]


def save_image(path: Union[str, Path], image: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 image as PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format="PNG")
    return Path(path)


def _message_image(text: str, size: Tuple[int, int] = (60, 400)) -> np.ndarray:
    """A white (H, W, 3) image with one line of text (an empty grid must still be a PNG)."""
    canvas = Image.new("RGB", (size[1], size[0]), (255, 255, 255))
    ImageDraw.Draw(canvas).text((10, size[0] // 2 - 6), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def save_retrieval_examples(
    prefix: Union[str, Path],
    split: Split,
    predictions: np.ndarray,
    positives: Sequence[np.ndarray],
    count: int,
    top: int = 5,
    thumb: Tuple[int, int] = (120, 160),
) -> Tuple[Path, Path]:
    """``<prefix>_examples.png`` (``count`` queries spread over the split) and
    ``<prefix>_failures.png`` (``count`` queries wrong at R@1), each with its top-``top``.

    Args:
        predictions: (Q, k) ranked database indices of all queries. positives: Q arrays.
    Returns:
        The two paths.
    """
    prefix = str(prefix)
    paths = (Path(f"{prefix}_examples.png"), Path(f"{prefix}_failures.png"))
    top_k = np.asarray(predictions)[:, :top]
    for path, rows, empty in (
        (paths[0], example_queries(split.num_queries, count), "no queries"),
        (paths[1], failure_queries(predictions, positives, count), "no query with a positive is wrong at R@1"),
    ):
        image = retrieval_grid(split, rows, top_k[rows], positives, thumb=thumb) if len(rows) else _message_image(empty)
        save_image(path, image)
    return paths
