"""Evaluation conventions: spatial NMS, recall breakdowns, streamed vs in-memory descriptors."""
import numpy as np
import pytest
import torch

from sfrs.config import Config, build_config
from sfrs.data import Split, open_dataset
from sfrs.errors import DataError
from sfrs.models import build_network
from sfrs.retrieval import evaluate, evaluate_split, format_report, recall_report
from tests.tiny import TINY_MODEL


def hand_split(database_utm, query_utm, place_ids=None, attributes=None):
    return Split(
        dataset="hand", split="test",
        database_paths=[f"db{i}.jpg" for i in range(len(database_utm))],
        query_paths=[f"q{i}.jpg" for i in range(len(query_utm))],
        database_utm=np.asarray(database_utm, dtype=np.float64),
        query_utm=np.asarray(query_utm, dtype=np.float64),
        database_place_ids=None if place_ids is None else np.asarray(place_ids),
        query_attributes=attributes or {},
    )


def test_nms__views_of_one_wrong_place_no_longer_fill_the_top_n():
    # Place 0 (1 km away) has 6 views whose descriptors are nearest to the query; place 1,
    # where the query was taken, comes 7th. Places 2..4 are wrong and farther still.
    views = [(1000.0, 0.0)] * 6 + [(0.0, 0.0)] + [(2000.0, 0.0), (3000.0, 0.0), (4000.0, 0.0)]
    place_ids = [0] * 6 + [1, 2, 3, 4]
    database = np.array([[0.1 * i, 0.0] for i in range(6)] + [[0.7, 0.0], [0.8, 0.0], [0.9, 0.0], [1.0, 0.0]],
                        dtype=np.float32)
    queries = np.zeros((1, 2), dtype=np.float32)
    split = hand_split(views, [(3.0, 0.0)], place_ids)

    plain, plain_predictions = recall_report(split, database, queries, ns=(1, 2, 5))
    suppressed, nms_predictions = recall_report(split, database, queries, ns=(1, 2, 5), nms=True)

    assert plain["recall"] == {"1": 0.0, "2": 0.0, "5": 0.0} and plain["nms"] is False
    np.testing.assert_array_equal(plain_predictions[0], [0, 1, 2, 3, 4])
    assert suppressed["recall"] == {"1": 0.0, "2": 100.0, "5": 100.0} and suppressed["nms"] is True
    np.testing.assert_array_equal(nms_predictions[0], [0, 6, 7, 8, 9])  # one hit per place, in rank order


def test_nms__without_place_ids_is_a_clear_error():
    split = hand_split([(0.0, 0.0), (50.0, 0.0)], [(1.0, 0.0)])
    with pytest.raises(DataError, match="place ids"):
        recall_report(split, np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32)[:1], ns=(1,), nms=True)


def test_breakdown__matches_recall_of_each_query_group_computed_directly():
    rng = np.random.default_rng(0)
    num_db, num_q = 200, 60
    database_utm = np.stack([np.arange(num_db) * 5.0, np.zeros(num_db)], axis=1)
    query_utm = database_utm[rng.choice(num_db, num_q)] + rng.normal(0, 5, size=(num_q, 2))
    database = rng.normal(size=(num_db, 8)).astype(np.float32)
    queries = rng.normal(size=(num_q, 8)).astype(np.float32)
    night = rng.random(num_q) < 0.3
    sideways = rng.random(num_q) < 0.5
    split = hand_split(database_utm, query_utm, attributes={
        "night": night, "sideways": sideways, "timestamp": np.arange(num_q),  # not boolean: ignored
    })
    ns = (1, 5, 10)
    report, predictions = recall_report(split, database, queries, ns=ns)
    positives = split.positives(25.0)

    def direct(mask):
        rows = np.flatnonzero(mask)
        return {
            str(n): 100.0 * sum(bool(np.isin(predictions[q, :n], positives[q]).any()) for q in rows) / len(rows)
            for n in ns
        }

    expected = {"night": night, "day": ~night, "sideways": sideways, "not_sideways": ~sideways}
    assert set(report["breakdown"]) == set(expected)
    for group, mask in expected.items():
        assert report["breakdown"][group] == pytest.approx(direct(mask))
        assert report["breakdown_queries"][group] == int(mask.sum())
    assert "night" in format_report({**report, "seconds": {}})


def test_breakdown__absent_without_boolean_attributes():
    split = hand_split([(0.0, 0.0), (50.0, 0.0)], [(1.0, 0.0)])
    report, _ = recall_report(split, np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32)[:1], ns=(1,))
    assert "breakdown" not in report


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_network(build_config(Config, None, TINY_MODEL).model).eval()


def test_streamed_descriptors__same_predictions_and_recalls_as_in_memory(model, tiny_city_root, tmp_path):
    split = open_dataset("synthetic:tiny", "test")
    options = dict(batch_size=16, progress=False, nms=True, query_resize=40)
    in_memory = evaluate(model, split, **options)
    streamed = evaluate(model, split, stream_dir=tmp_path, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_tiny_test_database.h5", "synthetic_tiny_test_queries.h5"]
    np.testing.assert_array_equal(streamed.predictions, in_memory.predictions)
    assert streamed.report["recall"] == in_memory.report["recall"]
    for key, value in {"protocol": split.protocol, "nms": True, "query_resize": 40, "index": "Flat"}.items():
        assert streamed.report[key] == value

    # The original keyword arguments of evaluate_split still work.
    report = evaluate_split(model, split, device="cpu", batch_size=16, num_workers=0, ns=(1, 5), threshold=25.0,
                            index="Flat", query_resize=0, save_descriptors=tmp_path / "d.h5", progress=False)
    assert set(report["recall"]) == {"1", "5"} and report["nms"] is False and (tmp_path / "d.h5").is_file()
