"""The predictions CSV: the scored ranking with its distances, metres and correctness."""
import csv

import h5py
import numpy as np
import pytest

from sfrs.retrieval import (
    ground_truth,
    ranked_report,
    recall_at_n,
    write_descriptor_file,
    write_predictions_csv,
    write_split_predictions,
)
from tests.retrieval.test_evaluate import hand_split


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_nms_ranking__distances_follow_the_kept_columns():
    # As in test_nms__views_of_one_wrong_place_no_longer_fill_the_top_n: place 0 has 6 views nearest the query.
    views = [(1000.0, 0.0)] * 6 + [(0.0, 0.0)] + [(2000.0, 0.0), (3000.0, 0.0), (4000.0, 0.0)]
    database = np.array([[0.1 * i, 0.0] for i in range(6)] + [[0.7, 0.0], [0.8, 0.0], [0.9, 0.0], [1.0, 0.0]],
                        dtype=np.float32)
    queries = np.zeros((1, 2), dtype=np.float32)
    split = hand_split(views, [(3.0, 0.0)], [0] * 6 + [1, 2, 3, 4])

    report, ranking = ranked_report(split, database, queries, ns=(1, 2, 5), nms=True, depth=6)

    np.testing.assert_array_equal(ranking.indices[0], [0, 6, 7, 8, 9, -1])  # 5 places, then padding
    expected = ((database[ranking.indices[0, :5]] - queries[0]) ** 2).sum(axis=1)  # squared L2, by hand
    np.testing.assert_allclose(ranking.distances[0, :5], expected, rtol=1e-6)
    assert np.isnan(ranking.distances[0, 5])
    assert report["recall"] == {"1": 0.0, "2": 100.0, "5": 100.0}


def test_ranked_report__deeper_ranking_keeps_the_recall_and_the_first_columns():
    rng = np.random.default_rng(0)
    utm = np.stack([np.arange(40) * 10.0, np.zeros(40)], axis=1)
    split = hand_split(utm, utm[::4] + 3.0)
    database = rng.normal(size=(40, 8)).astype(np.float32)
    queries = rng.normal(size=(10, 8)).astype(np.float32)

    shallow, short = ranked_report(split, database, queries, ns=(1, 5))
    deep, long = ranked_report(split, database, queries, ns=(1, 5), depth=12)

    assert long.indices.shape == (10, 12) and short.indices.shape == (10, 5)
    np.testing.assert_array_equal(long.indices[:, :5], short.indices)
    assert deep["recall"] == shallow["recall"]


def test_ground_truth__metres_and_correct_against_hand_computed_values():
    split = hand_split([(0.0, 0.0), (30.0, 40.0), (5.0, 0.0)], [(0.0, 0.0), (30.0, 40.0)])
    indices = np.array([[1, 2, 0], [1, -1, -1]])
    positives = split.positives(25.0)

    metres, correct = ground_truth(split, indices, positives)

    np.testing.assert_allclose(metres[0], [50.0, 5.0, 0.0])
    assert metres[1, 0] == 0.0 and np.isnan(metres[1, 1:]).all()
    np.testing.assert_array_equal(correct, [[False, True, True], [True, False, False]])


def test_write_split_predictions__rows_are_the_top_k_with_ground_truth(tmp_path):
    split = hand_split([(0.0, 0.0), (30.0, 40.0), (5.0, 0.0)], [(0.0, 0.0), (30.0, 40.0)])
    indices = np.array([[1, 2, 0], [1, -1, -1]])
    distances = np.array([[0.1, 0.2, 0.3], [0.05, np.nan, np.nan]], dtype=np.float32)

    count = write_split_predictions(tmp_path / "p.csv", split, distances, indices, split.positives(25.0), top_k=2)

    rows = read_rows(tmp_path / "p.csv")
    assert count == len(rows) == 3  # top-2 of query 0, and query 1's only prediction
    assert list(rows[0]) == ["query", "rank", "database_image", "distance", "metres", "correct"]
    assert [(r["query"], r["rank"], r["database_image"], r["correct"]) for r in rows] == [
        ("q0.jpg", "1", "db1.jpg", "0"), ("q0.jpg", "2", "db2.jpg", "1"), ("q1.jpg", "1", "db1.jpg", "1"),
    ]
    assert [float(r["metres"]) for r in rows] == [50.0, 5.0, 0.0]
    assert [float(r["distance"]) for r in rows] == pytest.approx([0.1, 0.2, 0.05])


def test_write_predictions_csv__correct_column_gives_back_recall_at_1(tmp_path):
    rng = np.random.default_rng(1)
    utm = np.stack([np.arange(30) * 10.0, np.zeros(30)], axis=1)
    split = hand_split(utm, utm[::3] + 2.0)
    database = rng.normal(size=(30, 4)).astype(np.float32)
    queries = database[::3] + rng.normal(0, 0.8, size=(10, 4)).astype(np.float32)
    report, ranking = ranked_report(split, database, queries, ns=(1, 3))

    write_split_predictions(tmp_path / "p.csv", split, ranking.distances, ranking.indices, split.positives(25.0), 3)

    rows = read_rows(tmp_path / "p.csv")
    first = [r["correct"] == "1" for r in rows if r["rank"] == "1"]
    assert 100.0 * sum(first) / len(first) == pytest.approx(report["recall"]["1"])
    assert report["recall"]["1"] == pytest.approx(recall_at_n(ranking.indices, split.positives(25.0), (1,))[1])


def test_write_predictions_csv__ground_truth_columns_come_together(tmp_path):
    with pytest.raises(ValueError, match="both or neither"):
        write_predictions_csv(tmp_path / "p.csv", ["q"], ["d"], np.zeros((1, 1)), np.zeros((1, 1), int),
                              metres=np.zeros((1, 1)))


def test_write_descriptor_file__without_coordinates_has_no_utm_datasets(tmp_path):
    write_descriptor_file(tmp_path / "d.h5", np.ones((3, 4)), np.zeros((2, 4)), ["a", "b", "c"], ["x", "y"])
    with h5py.File(tmp_path / "d.h5", "r") as handle:
        assert sorted(handle) == ["database", "database_paths", "queries", "query_paths"]
        assert handle["database"].dtype == np.float32 and handle["queries"].shape == (2, 4)
        assert handle.attrs["dataset"] == "unlabelled"
