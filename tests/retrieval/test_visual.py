"""Retrieval galleries and the query map: sizes, kept aspect ratios, marks readable without
colour, and the map's points."""
import numpy as np
from PIL import Image

from sfrs.retrieval import map_points, path_grid, save_map, save_retrieval_examples
from sfrs.retrieval.thumbnails import BAND, CAPTION_HEIGHT, caption, draw_cell, letterbox
from tests.retrieval.test_evaluate import hand_split

PNG_MAGIC = b"\x89PNG"
RED_2_TO_1 = (200, 100)  # width, height


def red_image(tmp_path, name="wide.png", size=RED_2_TO_1):
    path = tmp_path / name
    Image.new("RGB", size, (255, 0, 0)).save(path)
    return str(path)


def is_red(pixels):
    return (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)


def test_letterbox__2_to_1_image_in_a_square_keeps_its_aspect_with_bands_above_and_below():
    cell = np.asarray(letterbox(Image.new("RGB", RED_2_TO_1, (255, 0, 0)), (100, 100)))

    assert cell.shape == (100, 100, 3)
    red_rows = np.flatnonzero(is_red(cell).all(axis=1))
    assert (red_rows[0], red_rows[-1]) == (25, 74)  # 100 x 50, centred
    assert (cell[:25] == BAND).all() and (cell[75:] == BAND).all()


def test_draw_cell__image_keeps_its_aspect_ratio_inside_the_frame(tmp_path):
    border = 4
    cell = np.asarray(draw_cell(red_image(tmp_path), (100 + 2 * border + CAPTION_HEIGHT, 100 + 2 * border),
                                "correct", "#1 OK 0.100", border))

    red = is_red(cell)
    rows, cols = np.flatnonzero(red.any(axis=1)), np.flatnonzero(red.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert (width, height) == (100, 50)  # 2:1 kept: a squashed image would fill 100 x 100
    assert (cell[border:border + 25, border:-border] == BAND).all()  # the band above


def test_frames__correct_and_wrong_differ_without_colour(tmp_path):
    path = red_image(tmp_path, size=(160, 120))
    grey = {
        status: np.asarray(draw_cell(path, (120, 160), status, caption(status, 1, 0.5)).convert("L"))
        for status in ("correct", "wrong")
    }
    top_correct, top_wrong = grey["correct"][1], grey["wrong"][1]  # a row inside the top frame

    assert len(np.unique(top_correct)) == 1  # solid
    assert len(np.unique(top_wrong)) == 2 and np.count_nonzero(np.diff(top_wrong.astype(int))) >= 20  # dashed
    assert caption("correct", 1, 0.5) == "#1 OK d=0.5" and caption("wrong", 3, 1.25) == "#3 X d=1.25"
    assert caption("neutral", 2, 0.000312) == "#2 d=0.000312" and caption("query") == "query"


def test_path_grid__size_and_captions_change_the_cells(tmp_path):
    query, database = red_image(tmp_path, "q.png"), [red_image(tmp_path, f"d{i}.png") for i in range(3)]
    predictions = np.array([[0, 1, -1], [2, 0, 1]])
    correct = np.array([[True, False, False], [False, True, True]])
    thumb = (60, 80)

    grid = path_grid([query, query], database, predictions, correct, thumb=thumb,
                     distances=np.array([[0.1, 0.2, np.nan], [0.3, 0.4, 0.5]]))
    without_distances = path_grid([query, query], database, predictions, correct, thumb=thumb)

    assert grid.shape == (2 * (60 + 2), 4 * 80 + 3 * 2 + 6, 3) and grid.dtype == np.uint8
    assert not np.array_equal(grid, without_distances)  # the distances are written into the captions


def test_map_points__one_point_per_query_split_by_r1():
    # Queries 0 and 1 have positives (0 retrieved correctly, 1 not); query 2 is 1 km from every database image.
    split = hand_split([(500_010.0, 4_000_020.0), (500_300.0, 4_000_020.0), (500_600.0, 4_000_020.0)],
                       [(500_012.0, 4_000_020.0), (500_302.0, 4_000_020.0), (501_700.0, 4_000_020.0)])
    predictions = np.array([[0, 1], [0, 1], [2, 1]])

    points = map_points(split, predictions, split.positives(25.0))

    assert (len(points.database), len(points.correct), len(points.wrong), len(points.without_positive)) == (3, 1, 1, 1)
    assert points.origin == (500_000.0, 4_000_000.0)
    np.testing.assert_allclose(points.correct, [[12.0, 20.0]])  # metres from the origin
    np.testing.assert_allclose(points.wrong, [[302.0, 20.0]])


def test_save_map_and_examples__write_pngs(tmp_path):
    paths = [red_image(tmp_path, f"i{i}.png") for i in range(3)]
    split = hand_split([(0.0, 0.0), (100.0, 0.0), (200.0, 0.0)], [(1.0, 0.0), (101.0, 0.0)])
    split = type(split)(dataset="hand", split="test", database_paths=paths, query_paths=paths[:2],
                        database_utm=split.database_utm, query_utm=split.query_utm)
    predictions = np.array([[0, 1], [0, 1]])

    assert save_map(tmp_path / "map.png", split, predictions, split.positives(25.0)).read_bytes()[:4] == PNG_MAGIC
    written = save_retrieval_examples(tmp_path / "r", split, predictions, split.positives(25.0), count=2, top=2,
                                      distances=np.array([[0.1, 0.2], [0.3, 0.4]]))
    assert [p.name for p in written] == ["r_examples.png", "r_failures.png", "r_map.png"]
    assert all(p.read_bytes()[:4] == PNG_MAGIC for p in written)
