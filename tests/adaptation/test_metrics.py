"""Average precision (University-1652 definition) against a naive loop over the ranking."""
import numpy as np
import pytest

from sfrs.adaptation import average_precision, mean_average_precision


def naive_ap(scores, positives):
    """University-1652 / re-ID compute_mAP: walk the ranking, average the precision just
    before and at each hit."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    good = [rank for rank, index in enumerate(order) if index in set(positives)]
    ap = 0.0
    for i, rank in enumerate(good):
        precision = (i + 1) / (rank + 1)
        old_precision = i / rank if rank != 0 else 1.0
        ap += (1 / len(good)) * (old_precision + precision) / 2
    return ap


def test_average_precision__hand_computed():
    assert average_precision(np.array([0])) == 1.0
    # one positive at rank 3 (0-based 2): (0/2 + 1/3) / 2
    assert average_precision(np.array([2])) == pytest.approx(1 / 6)
    # hits at 0 and 2: ((1 + 1) / 2 + (1/2 + 2/3) / 2) / 2
    assert average_precision(np.array([0, 2])) == pytest.approx((1 + (0.5 + 2 / 3) / 2) / 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_mean_average_precision__matches_naive_loop(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    queries = rng.normal(size=(23, 8)).astype(np.float32)
    database = rng.normal(size=(40, 8)).astype(np.float32)
    positives = [rng.choice(40, size=int(rng.integers(0, 6)), replace=False) for _ in range(23)]
    import sfrs.adaptation.metrics as metrics

    monkeypatch.setattr(metrics, "CHUNK_ENTRIES", 7 * 40)  # several chunks of queries
    got = mean_average_precision(queries, database, positives)
    scores = queries @ database.T
    expected = [naive_ap(scores[q].tolist(), positives[q].tolist()) for q in range(23) if len(positives[q])]
    assert got == pytest.approx(100 * np.mean(expected), rel=1e-9)


def test_mean_average_precision__none_without_any_positive():
    assert mean_average_precision(np.ones((2, 3)), np.ones((4, 3)), [np.array([], int)] * 2) is None
