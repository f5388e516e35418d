import numpy as np

from sfrs.data import Split
from sfrs.training.difficult import nearest_candidates, pick_difficult_positives
from sfrs.training.mining import HardNegativeMiner, build_training_set
from tests.training.test_rerank import clustered, dense_final, spec_selection


def make_split(rng, num_db=120, num_q=30):
    db_utm = np.stack([rng.uniform(0, 300, num_db), rng.uniform(0, 40, num_db)], 1)
    q_utm = np.stack([rng.uniform(0, 300, num_q), rng.uniform(0, 40, num_q)], 1)
    q_utm[0] = [5000.0, 5000.0]  # far from everything: must be dropped
    return Split(
        dataset="unit", split="train",
        database_paths=[f"db{i}.jpg" for i in range(num_db)], query_paths=[f"q{i}.jpg" for i in range(num_q)],
        database_utm=db_utm, query_utm=q_utm,
    )


def unit(rng, n, d=16):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_training_set__keeps_queries_with_a_10m_positive():
    rng = np.random.default_rng(0)
    split = make_split(rng)
    ts = build_training_set(split, 10.0, 25.0)
    assert 0 not in ts.query_ids and ts.dropped >= 1
    assert ts.dropped + ts.num_queries == split.num_queries
    for row, q in enumerate(ts.query_ids):
        dist = np.linalg.norm(split.database_utm - split.query_utm[q], axis=1)
        assert set(ts.positives[row]) == set(np.flatnonzero(dist <= 10.0))
        assert set(ts.non_negatives[row]) == set(np.flatnonzero(dist <= 25.0))


def test_miner__negatives_outside_25m_and_hardest_of_the_pool():
    rng = np.random.default_rng(1)
    split = make_split(rng)
    ts = build_training_set(split, 10.0, 25.0)
    db, queries = unit(rng, split.num_database), unit(rng, ts.num_queries)
    miner = HardNegativeMiner(ts, num_negatives=4, pool_size=10_000)  # pool = whole database
    rows = np.arange(ts.num_queries)
    best, negatives = miner.mine(rows, queries, db, np.random.default_rng(0))
    for row in rows:
        dist_geo = np.linalg.norm(split.database_utm[negatives[row]] - split.query_utm[ts.query_ids[row]], axis=1)
        assert np.all(dist_geo > 25.0)
        # brute force in float64: the 4 feature-nearest database images outside 25 m
        feature = ((db.astype(np.float64) - queries[row]) ** 2).sum(1)
        allowed = np.setdiff1d(np.arange(split.num_database), ts.non_negatives[row])
        expected = allowed[np.argsort(feature[allowed])[:4]]
        assert list(negatives[row]) == list(expected)
        positives = ts.positives[row]
        assert best[row] == positives[np.argmin(feature[positives])]


def test_miner__remembers_previous_hardest_negatives():
    rng = np.random.default_rng(2)
    split = make_split(rng)
    ts = build_training_set(split, 10.0, 25.0)
    db, queries = unit(rng, split.num_database), unit(rng, ts.num_queries)
    miner = HardNegativeMiner(ts, num_negatives=3, pool_size=10_000)
    rows = np.arange(ts.num_queries)
    _, first = miner.mine(rows, queries, db, np.random.default_rng(0))
    state = miner.state_dict()
    # a tiny random pool would almost never contain them again: the memory must
    small = HardNegativeMiner(ts, num_negatives=3, pool_size=3)
    small.load_state_dict(state)
    _, second = small.mine(rows, queries, db, np.random.default_rng(5))
    assert np.array_equal(first, second)


def test_nearest_candidates__are_the_feature_nearest_of_each_list():
    rng = np.random.default_rng(3)
    split = make_split(rng, num_db=200)
    ts = build_training_set(split, 10.0, 25.0)
    db, queries = unit(rng, split.num_database), unit(rng, ts.num_queries)
    got = nearest_candidates(queries, db, ts.positives, 3)
    for row in range(ts.num_queries):
        positives = ts.positives[row]
        order = sorted(positives, key=lambda i: float(((db[i] - queries[row]) ** 2).sum()))[:3]
        assert list(got[row][got[row] >= 0]) == order
        assert np.all(got[row][len(order):] == -1)


def test_pick_difficult_positives__is_the_spec_rule_on_the_joint_set():
    rng = np.random.default_rng(4)
    split = make_split(rng, num_db=300, num_q=30)  # ~8 positives per query
    ts = build_training_set(split, 10.0, 25.0)
    x = clustered(330, seed=4, clusters=3, spread=1.0)
    kept, db = x[:30][ts.query_ids], x[30:]
    rows = np.arange(0, ts.num_queries, 2)  # one chunk of the kept queries
    candidates = nearest_candidates(kept[rows], db, [ts.positives[r] for r in rows], 6)
    got = pick_difficult_positives(candidates, keep=3, rerank=True, probes=rows, query_descriptors=kept,
                                   database_descriptors=db, k1=8, k2=1, lam=0.1, distance="reference")
    # independent: dense re-ranking over (every kept query, then the database) and the list rule
    joint = np.concatenate([kept, db])
    joint_candidates = np.where(candidates >= 0, candidates + len(kept), -1)
    final = dense_final(joint, rows, joint_candidates, 8, 1, 0.1, "reference")
    expected = spec_selection(candidates, final, 3)
    assert np.array_equal(got, expected)
    plain = pick_difficult_positives(candidates, keep=3, rerank=False)
    assert np.array_equal(plain, candidates[:, :3])
    assert not np.array_equal(got, plain)  # re-ranking changes the picks here: it really ran
