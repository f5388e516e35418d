"""Sparse k-reciprocal re-ranking against a dense reference written with sets and loops."""
import numpy as np
import pytest

from sfrs.training.rerank import knn_graph, order_difficult_positives, rerank_candidates


def clustered(num=60, dim=8, clusters=6, seed=0):
    """L2-normalised points around a few centres: continuous values, so no distance ties."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(clusters, size=num)] + 0.35 * rng.normal(size=(num, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def dense_rerank(x, probes, candidates, k1, k2, lam):
    """The module docstring's definition on the full (N_all, N_all) matrices."""
    x = x.astype(np.float64)
    n = len(x)
    dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    order = np.argsort(dist, axis=1, kind="stable")

    def nn(i, k):
        return [int(j) for j in order[i, : k + 1]]

    def recip(i, k):
        return {j for j in nn(i, k) if i in nn(j, k)}

    half = int(round(k1 / 2))
    v = np.zeros((n, n))
    for i in range(n):
        base = recip(i, k1)
        expanded = set(base)
        for j in base:
            other = recip(j, half)
            if len(other & base) > 2 / 3 * len(other):
                expanded |= other
        members = sorted(expanded)
        weights = np.exp(-dist[i, members])
        v[i, members] = weights / weights.sum()
    if k2 > 1:
        v = np.stack([v[order[i, :k2]].mean(axis=0) for i in range(n)])

    out = np.full(candidates.shape, np.inf)
    for p, probe in enumerate(probes):
        for c, cand in enumerate(candidates[p]):
            if cand < 0:
                continue
            jaccard = 1 - np.minimum(v[probe], v[cand]).sum() / np.maximum(v[probe], v[cand]).sum()
            out[p, c] = (1 - lam) * jaccard + lam * dist[probe, cand]
    return out


@pytest.fixture(scope="module")
def items():
    return clustered()


@pytest.fixture(scope="module")
def lists(items):
    rng = np.random.default_rng(1)
    probes = rng.choice(len(items), size=12, replace=False)
    # Each probe's 10 nearest others (the usual case) and 10 random items.
    d = ((items[probes, None, :].astype(np.float64) - items[None, :, :]) ** 2).sum(-1)
    near = np.argsort(d, axis=1)[:, 1:11]
    far = np.stack([rng.choice(len(items), size=10, replace=False) for _ in probes])
    return probes, np.concatenate([near, far], axis=1)


@pytest.mark.parametrize("k1", [4, 6])
@pytest.mark.parametrize("k2", [1, 3])
@pytest.mark.parametrize("lam", [0.0, 0.1, 0.3])
def test_rerank_candidates__matches_dense_reference(items, lists, k1, k2, lam):
    probes, candidates = lists
    expected = dense_rerank(items, probes, candidates, k1, k2, lam)
    got = rerank_candidates(items, probes, candidates, k1=k1, k2=k2, lam=lam)
    assert got.shape == candidates.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    # The Jaccard part is not trivial: some candidates share neighbours, others none.
    if lam == 0.0:
        assert (got < 1).any() and (got == 1).any()


def test_rerank_candidates__accepts_a_precomputed_wider_graph(items, lists):
    probes, candidates = lists
    graph = knn_graph(items, 12)
    got = rerank_candidates(items, probes, candidates, k1=6, k2=3, lam=0.1, graph=graph)
    np.testing.assert_allclose(got, dense_rerank(items, probes, candidates, 6, 3, 0.1), rtol=0, atol=1e-9)


def test_rerank_candidates__padding_gets_inf(items, lists):
    probes, candidates = lists
    padded = candidates[:, :8].copy()
    padded[0, 5:] = -1
    padded[3, :] = -1
    got = rerank_candidates(items, probes, padded, k1=4, k2=3)
    assert np.all(np.isinf(got[0, 5:])) and np.all(np.isinf(got[3]))
    unpadded = rerank_candidates(items, probes, candidates[:, :8], k1=4, k2=3)
    keep = padded >= 0
    np.testing.assert_array_equal(got[keep], unpadded[keep])
    everything_padded = rerank_candidates(items, probes[:2], np.full((2, 3), -1))
    assert np.all(np.isinf(everything_padded))


def test_rerank_candidates__rejects_bad_arguments(items, lists):
    probes, candidates = lists
    with pytest.raises(ValueError, match="k2"):
        rerank_candidates(items, probes, candidates, k1=4, k2=6)
    with pytest.raises(ValueError, match="candidate ids"):
        rerank_candidates(items, probes, candidates + len(items), k1=4)
    with pytest.raises(ValueError, match="at least"):
        rerank_candidates(items[:5], probes[:1] % 5, candidates[:1] % 5, k1=20)
    with pytest.raises(ValueError, match="graph"):
        rerank_candidates(items, probes, candidates, k1=6, graph=knn_graph(items, 5))


def test_knn_graph__self_first_with_duplicated_vectors():
    x = clustered(num=20, dim=4, seed=2)
    x = np.concatenate([x, x[:5], x[:1], x[:1]])  # item 0 has three twins
    distances, indices = knn_graph(x, 6)
    assert distances.dtype == np.float32 and indices.dtype == np.int64
    assert distances.shape == indices.shape == (len(x), 6)
    np.testing.assert_array_equal(indices[:, 0], np.arange(len(x)))
    assert np.all(distances[:, 0] == 0) and np.all(np.diff(distances, axis=1) >= 0)
    # The twins of item 0 (20, 25, 26 and 0) follow each one at distance 0, by index.
    for i in (0, 20, 25, 26):
        twins = sorted({0, 20, 25, 26} - {i})
        np.testing.assert_array_equal(indices[i, 1:4], twins)
        assert np.all(distances[i, 1:4] == 0)
    # Items without a twin: the exact float64 neighbours and distances.
    exact = ((x[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    for i in range(5, 20):
        np.testing.assert_array_equal(indices[i], np.argsort(exact[i], kind="stable")[:6])
        np.testing.assert_allclose(distances[i], np.sort(exact[i])[:6], atol=1e-5)


def test_knn_graph__self_enters_a_row_full_of_twins():
    x = np.repeat(clustered(num=3, dim=4, seed=3), 5, axis=0)  # every vector five times
    _, indices = knn_graph(x, 3)
    np.testing.assert_array_equal(indices[:, 0], np.arange(len(x)))
    for i in range(len(x)):
        assert set(indices[i].tolist()) <= set(range(5 * (i // 5), 5 * (i // 5) + 5))
        assert len(set(indices[i].tolist())) == 3


def test_knn_graph__rejects_k_larger_than_the_set():
    with pytest.raises(ValueError, match="k must"):
        knn_graph(clustered(num=4, dim=3), 5)


def test_order_difficult_positives__promoted_first_then_euclidean_order():
    candidates = np.array([
        [10, 11, 12, 13, 14, 15],
        [20, 21, 22, -1, -1, -1],
        [30, 31, 32, 33, -1, -1],
    ])
    final = np.array([
        # reranked order 13, 10, 15, 11, 12, 14 -> ranks 1, 3, 4, 0, 5, 2
        # promotions: 10:-1, 11:-2, 12:-2, 13:+3, 14:-1, 15:+3 -> 13 and 15 tie at +3,
        # 13 has the better reranked rank.
        [0.2, 0.4, 0.5, 0.1, 0.9, 0.3],
        [0.3, 0.2, 0.1, np.inf, np.inf, np.inf],  # 22:+2, 21:0, 20:-2
        [0.1, 0.2, 0.3, 0.4, np.inf, np.inf],  # nothing promoted: Euclidean order
    ])
    out = order_difficult_positives(candidates, final, keep=4)
    np.testing.assert_array_equal(out, [
        [13, 15, 10, 11],
        [22, 20, 21, -1],
        [30, 31, 32, 33],
    ])
    wide = order_difficult_positives(candidates, final, keep=8)
    assert wide.shape == (3, 8) and wide.dtype == np.int64
    np.testing.assert_array_equal(wide[0], [13, 15, 10, 11, 12, 14, -1, -1])
    assert order_difficult_positives(candidates, final, keep=0).shape == (3, 0)


def test_order_difficult_positives__ties_in_final_distance_keep_euclidean_order():
    out = order_difficult_positives(np.array([[1, 2, 3]]), np.array([[0.5, 0.5, 0.1]]), keep=3)
    np.testing.assert_array_equal(out, [[3, 1, 2]])


def test_order_difficult_positives__rejects_non_finite_valid_distances():
    with pytest.raises(ValueError, match="finite"):
        order_difficult_positives(np.array([[1, 2]]), np.array([[0.1, np.nan]]), keep=2)


def test_rerank_then_order__end_to_end_on_the_clustered_set(items, lists):
    probes, candidates = lists
    near = candidates[:, :10]
    final = rerank_candidates(items, probes, near, k1=6)
    chosen = order_difficult_positives(near, final, keep=5)
    assert chosen.shape == (len(probes), 5)
    for row, picked in zip(near, chosen):
        assert set(picked.tolist()) <= set(row.tolist())
        assert len(set(picked.tolist())) == 5
