"""Recall@N against naive counts written here; spatial NMS and breakdowns on hand-built cases."""
import numpy as np
import pytest

from sfrs.data import positives_within
from sfrs.errors import DataError
from sfrs.retrieval import (
    count_queries_without_positive,
    per_query_first_correct_rank,
    recall_at_n,
    recall_breakdown,
    search,
    spatial_nms,
)


def naive_recall(predictions, positives, ns):
    """Percent of queries with a positive among their first N predictions; -1 is no prediction."""
    result = {}
    for n in ns:
        hits = 0
        for row, pos in zip(predictions, positives):
            hits += any(int(i) >= 0 and int(i) in set(int(p) for p in pos) for i in list(row)[:n])
        result[n] = 100.0 * hits / len(predictions)
    return result


def brute_force_recall(query_desc, db_desc, query_utm, db_utm, ns, threshold):
    """Naive loops over a full float64 distance matrix; a query without positives is a miss."""
    desc_dist = ((query_desc[:, None, :].astype(np.float64) - db_desc[None].astype(np.float64)) ** 2).sum(-1)
    geo_dist = np.sqrt(((query_utm[:, None, :] - db_utm[None]) ** 2).sum(-1))
    result = {}
    for n in ns:
        hits = 0
        for q in range(len(query_desc)):
            ranked = np.argsort(desc_dist[q], kind="stable")[:n]
            hits += any(geo_dist[q, i] <= threshold for i in ranked)
        result[n] = 100.0 * hits / len(query_desc)
    return result, desc_dist


def test_recall_at_n__matches_naive_count_with_padding_and_queries_without_positives():
    rng = np.random.default_rng(0)
    num_q, num_db, k = 200, 50, 12
    predictions = np.stack([rng.permutation(num_db)[:k] for _ in range(num_q)])
    predictions[rng.random((num_q, k)) < 0.1] = -1  # approximate search / NMS padding
    positives = [rng.choice(num_db, size=rng.integers(0, 4), replace=False) for _ in range(num_q)]
    ns = (1, 2, 5, 12, 30)
    got = recall_at_n(predictions, positives, ns)
    expected = naive_recall(predictions, positives, ns)
    assert got.keys() == expected.keys()
    for n in ns:
        assert got[n] == pytest.approx(expected[n])
    assert count_queries_without_positive(positives) == sum(len(p) == 0 for p in positives) > 0


def test_recall_at_n__of_a_flat_search_matches_brute_force_with_duplicates():
    rng = np.random.default_rng(0)
    num_db, num_q, dim = 300, 80, 16
    db_desc = rng.normal(size=(num_db, dim)).astype(np.float32)
    db_utm = rng.uniform(0, 300, size=(num_db, 2))
    # Exact duplicate descriptors at the same place: their tie order cannot change a recall.
    db_desc[150:170] = db_desc[:20]
    db_utm[150:170] = db_utm[:20]
    # Queries near their best database match (so recall is far from 0), some exact duplicates,
    # and 10 queries far away from every database image.
    source = rng.integers(0, num_db, num_q)
    query_desc = (db_desc[source] + 0.8 * rng.normal(size=(num_q, dim))).astype(np.float32)
    query_desc[5] = db_desc[3]
    query_desc[6] = query_desc[7]
    query_utm = db_utm[source] + rng.normal(scale=15.0, size=(num_q, 2))
    query_utm[-10:] += 10_000.0
    ns = (1, 5, 10, 20)

    expected, desc_dist = brute_force_recall(query_desc, db_desc, query_utm, db_utm, ns, 25.0)
    # Besides the deliberate duplicates, no near-ties that float32 search could reorder.
    for row in desc_dist:
        gaps = np.diff(np.unique(np.round(np.sort(row)[:25], 9)))
        assert gaps.min() > 1e-4
    _, predictions = search(query_desc, db_desc, k=max(ns))
    got = recall_at_n(predictions, positives_within(query_utm, db_utm, 25.0), ns)
    assert got.keys() == expected.keys()
    for n in ns:
        assert got[n] == pytest.approx(expected[n])
    assert 0 < got[1] < got[20] <= 100 * (num_q - 10) / num_q


def test_recall_at_n__padding_is_a_miss_and_large_n_uses_all_columns():
    predictions = np.array([[3, -1, -1], [-1, 2, 0], [5, 6, 7], [1, 4, 9]])
    positives = [np.array([3]), np.array([0]), np.array([], dtype=np.int64), np.array([9, 8])]
    recalls = recall_at_n(predictions, positives, ns=(1, 2, 3, 50))
    assert recalls == {1: 25.0, 2: 25.0, 3: 75.0, 50: 75.0}
    np.testing.assert_array_equal(per_query_first_correct_rank(predictions, positives), [0, 2, -1, 2])
    assert count_queries_without_positive(positives) == 1


def test_recall_at_n__rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="2 prediction rows but 1 positive"):
        recall_at_n(np.zeros((2, 3), int), [np.array([0])], ns=(1,))
    with pytest.raises(ValueError, match="positive integers"):
        recall_at_n(np.zeros((1, 3), int), [np.array([0])], ns=(0,))


def test_recall_breakdown__each_group_matches_a_naive_count():
    rng = np.random.default_rng(1)
    predictions = rng.integers(-1, 30, size=(40, 6))
    positives = [rng.choice(30, size=rng.integers(0, 3), replace=False) for _ in range(40)]
    night = rng.random(40) < 0.3
    ns = (1, 5)
    breakdown, counts = recall_breakdown(predictions, positives, {"night": night, "stamp": np.arange(40)}, ns)
    assert set(breakdown) == {"night", "day"}  # non-boolean attributes define no group
    for group, mask in (("night", night), ("day", ~night)):
        rows = np.flatnonzero(mask)
        expected = naive_recall(predictions[rows], [positives[i] for i in rows], ns)
        assert breakdown[group] == pytest.approx({str(n): v for n, v in expected.items()})
        assert counts[group] == len(rows)
    with pytest.raises(DataError, match="shape"):
        recall_breakdown(predictions, positives, {"night": night[:5]}, ns)


def test_spatial_nms__keeps_first_hit_per_place_and_changes_recall():
    # Database: panorama 0 = views 0,1,2; panorama 1 = views 3,4; panorama 2 = view 5.
    place_ids = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([
        [0, 1, 2, 5, 3],   # three views of one wrong panorama push the true one (5) to rank 4
        [3, 4, -1, -1, -1],  # fewer distinct places than `keep`: padded with -1
    ])
    positives = [np.array([5]), np.array([0])]
    assert recall_at_n(predictions, positives, ns=(2,)) == {2: 0.0}
    kept = spatial_nms(predictions, place_ids, keep=3)
    np.testing.assert_array_equal(kept, [[0, 5, 3], [3, -1, -1]])
    assert recall_at_n(kept, positives, ns=(2,)) == {2: 50.0}


def test_spatial_nms__rejects_out_of_range_predictions():
    with pytest.raises(ValueError, match="out of range"):
        spatial_nms(np.array([[0, 7]]), np.array([0, 1]), keep=2)
