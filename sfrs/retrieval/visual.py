"""Retrieval examples as an image grid: a query, then its top-k with rank and distance.

Labelled splits mark each retrieved image correct (within the positive radius: solid green
frame, ``OK``) or wrong (dashed red frame, ``X``); unlabelled retrieval (no coordinates)
uses a neutral frame. Cells are drawn by :mod:`sfrs.retrieval.thumbnails`; the map of
queries next to the galleries by :mod:`sfrs.retrieval.map_plot`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from sfrs.data import Split
from sfrs.retrieval.map_plot import save_map
from sfrs.retrieval.recall import correct_matrix, per_query_first_correct_rank
from sfrs.retrieval.thumbnails import caption, draw_cell
from sfrs.utils.io import atomic_path


def path_grid(
    query_paths: Sequence[str],
    database_paths: Sequence[str],
    predictions: np.ndarray,
    correct: Optional[np.ndarray] = None,
    thumb: Tuple[int, int] = (120, 160),
    border: int = 4,
    distances: Optional[np.ndarray] = None,
) -> np.ndarray:
    """(H, W, 3) uint8: one row per query: the query (grey frame), then its retrieved images,
    each captioned with its rank and descriptor distance.

    Args:
        query_paths: R query images, one per grid row.
        database_paths: all database images (indexed by ``predictions``).
        predictions: (R, k) database indices, best first; -1 leaves a blank cell.
        correct: (R, k) bool (solid green ``OK`` / dashed red ``X`` frames), or None for
            neutral frames (unlabelled).
        thumb: (height, width) of a cell; images keep their aspect ratio inside it.
        distances: (R, k) squared L2 descriptor distances shown in the captions, or None.
    """
    height, width = thumb
    predictions = np.asarray(predictions).reshape(len(query_paths), -1)
    k = predictions.shape[1]
    if distances is not None:
        distances = np.asarray(distances, dtype=np.float64).reshape(predictions.shape)
    gap = 6
    canvas = Image.new("RGB", ((k + 1) * width + k * 2 + gap, len(query_paths) * (height + 2)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (query, row) in enumerate(zip(query_paths, predictions)):
        y = r * (height + 2)
        canvas.paste(draw_cell(query, thumb, "query", caption("query"), border), (0, y))
        for j, db in enumerate(row):
            if db < 0:
                continue
            status = "neutral" if correct is None else ("correct" if correct[r, j] else "wrong")
            text = caption(status, j + 1, None if distances is None else float(distances[r, j]))
            x = width + gap + j * (width + 2)
            canvas.paste(draw_cell(database_paths[int(db)], thumb, status, text, border), (x, y))
        draw.line([(width + gap // 2, y), (width + gap // 2, y + height)], fill=(0, 0, 0), width=1)
    return np.asarray(canvas)


def retrieval_grid(
    split: Split,
    query_rows: Sequence[int],
    predictions: np.ndarray,
    positives: Sequence[np.ndarray],
    thumb: Tuple[int, int] = (120, 160),
    border: int = 4,
    distances: Optional[np.ndarray] = None,
) -> np.ndarray:
    """(H, W, 3) uint8: one row per query: the query (grey frame) and its retrieved
    database images (solid green ``OK`` = within the positive radius, dashed red ``X`` = wrong).

    ``predictions`` (and ``distances``, if given) have one row per entry of ``query_rows``
    (database ids, -1 = none); ``positives`` is indexed by query id (all Q queries of the split).
    """
    predictions = np.asarray(predictions).reshape(len(query_rows), -1)
    correct = correct_matrix(predictions, [positives[q] for q in query_rows])
    return path_grid([split.query_paths[q] for q in query_rows], split.database_paths, predictions, correct, thumb,
                     border, distances=distances)


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
    distances: Optional[np.ndarray] = None,
) -> Tuple[Path, Path, Path]:
    """``<prefix>_examples.png`` (``count`` queries spread over the split) and
    ``<prefix>_failures.png`` (``count`` queries wrong at R@1), each with its top-``top``,
    and ``<prefix>_map.png`` (every query at its UTM, correct or wrong at R@1).

    Args:
        predictions: (Q, k) ranked database indices of all queries. positives: Q arrays.
        distances: (Q, k) descriptor distances of ``predictions`` for the captions, or None.
    Returns:
        The three paths.
    """
    prefix = str(prefix)
    paths = (Path(f"{prefix}_examples.png"), Path(f"{prefix}_failures.png"), Path(f"{prefix}_map.png"))
    top_k = np.asarray(predictions)[:, :top]
    top_distances = None if distances is None else np.asarray(distances)[:, :top]
    for path, rows, empty in (
        (paths[0], example_queries(split.num_queries, count), "no queries"),
        (paths[1], failure_queries(predictions, positives, count), "no query with a positive is wrong at R@1"),
    ):
        if len(rows):
            image = retrieval_grid(split, rows, top_k[rows], positives, thumb=thumb,
                                   distances=None if top_distances is None else top_distances[rows])
        else:
            image = _message_image(empty)
        save_image(path, image)
    save_map(paths[2], split, predictions, positives)
    return paths
