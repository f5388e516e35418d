"""SFRS difficult positives: sparse k-reciprocal re-ranking and the promotion rule.

The expected values come from implementations written here from the words of the
contract (module docstring of ``sfrs.training.rerank`` and the spec's "Training tuple"):
a dense float64 re-ranking with Python sets and loops, and a list-based selection rule.
"""
import numpy as np
import pytest

from sfrs.training.rerank import (
    farthest_squared_distances,
    knn_graph,
    order_difficult_positives,
    rerank_candidates,
)


def clustered(num=60, dim=8, clusters=6, seed=0, spread=0.35):
    """L2-normalised points around a few centres: continuous values, so no distance ties."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(clusters, size=num)] + spread * rng.normal(size=(num, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def dense_final(x, probes, candidates, k1, k2, lam, distance):
    """final(p, c) from the contract, on full (N, N) float64 matrices.

    Base distance: the squared Euclidean distance s, or (``"reference"``) s squared and
    divided by the square of the row's largest s over the whole set.
    """
    x = x.astype(np.float64)
    n = len(x)
    s = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    if distance == "reference":
        d = s**2 / s.max(axis=1, keepdims=True) ** 2
    else:
        d = s
    lists = [[int(j) for j in row] for row in np.argsort(d, axis=1, kind="stable")]

    def nn(i, k):
        return lists[i][: k + 1]

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
        weights = np.exp(-d[i, members])
        v[i, members] = weights / weights.sum()
    if k2 > 1:
        v = np.stack([v[nn(i, k2 - 1)].mean(axis=0) for i in range(n)])

    out = np.full(candidates.shape, np.inf)
    for p, probe in enumerate(probes):
        for c, cand in enumerate(candidates[p]):
            if cand < 0:
                continue
            jaccard = 1 - np.minimum(v[probe], v[cand]).sum() / np.maximum(v[probe], v[cand]).sum()
            out[p, c] = (1 - lam) * jaccard + lam * d[probe, cand]
    return out


def spec_selection(candidates, final, keep):
    """The spec's rule, one row at a time with plain lists.

    Rank the valid candidates by final distance (equal distances keep the Euclidean
    order); keep first those re-ranking promotes, most promoted first (equal promotions:
    better re-ranked rank first), then the unchanged ones in Euclidean order; drop the
    demoted ones; keep up to ``keep``, -1 padded.
    """
    out = np.full((len(candidates), keep), -1, dtype=np.int64)
    for row, (ids, dists) in enumerate(zip(candidates, final)):
        entries = [(int(c), float(f)) for c, f in zip(ids, dists) if c >= 0]
        euclidean = {c: e for e, (c, _) in enumerate(entries)}
        by_final = sorted(entries, key=lambda entry: (entry[1], euclidean[entry[0]]))
        reranked = {c: r for r, (c, _) in enumerate(by_final)}
        promoted = [c for c, _ in entries if euclidean[c] > reranked[c]]
        promoted.sort(key=lambda c: (reranked[c] - euclidean[c], reranked[c]))
        unchanged = [c for c, _ in entries if euclidean[c] == reranked[c]]
        chosen = (promoted + unchanged)[:keep]
        out[row, : len(chosen)] = chosen
    return out


def probe_lists(items, seed, num_probes=12):
    """Probes with their 10 nearest others (the usual case) and 10 random items, some padded."""
    rng = np.random.default_rng(seed)
    probes = rng.choice(len(items), size=num_probes, replace=False)
    d = ((items[probes, None, :].astype(np.float64) - items[None, :, :]) ** 2).sum(-1)
    near = np.argsort(d, axis=1)[:, 1:11]
    far = np.stack([rng.choice(len(items), size=10, replace=False) for _ in probes])
    candidates = np.concatenate([near, far], axis=1)
    candidates[0, 15:] = -1
    candidates[1, 4:] = -1
    return probes, candidates


@pytest.mark.parametrize("distance", ["reference", "squared"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k1, k2, lam", [(4, 1, 0.1), (6, 1, 0.3), (4, 3, 0.1), (6, 4, 0.0)])
def test_rerank_candidates__matches_the_dense_definition(distance, seed, k1, k2, lam):
    items = clustered(seed=seed)
    probes, candidates = probe_lists(items, seed + 10)
    expected = dense_final(items, probes, candidates, k1, k2, lam, distance)
    got = rerank_candidates(items, probes, candidates, k1=k1, k2=k2, lam=lam, distance=distance)
    assert got.shape == candidates.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert np.all(np.isinf(got[candidates < 0]))
    if lam == 0.0:  # then final = Jaccard: not trivial, some share neighbours, others none
        jaccard = got[candidates >= 0]
        assert (jaccard < 1).any() and (jaccard == 1).any()


def test_rerank_candidates__default_is_the_reference_distance():
    items = clustered(seed=3)
    probes, candidates = probe_lists(items, 13)
    default = rerank_candidates(items, probes, candidates, k1=6)
    np.testing.assert_array_equal(default, rerank_candidates(items, probes, candidates, k1=6, distance="reference"))
    squared = rerank_candidates(items, probes, candidates, k1=6, distance="squared")
    valid = candidates >= 0
    assert np.abs(default[valid] - squared[valid]).max() > 1e-3


def test_rerank_candidates__row_maximum_runs_over_the_whole_set():
    """Items that are nobody's neighbour still set the reference's row maxima."""
    # The bulk lies in a cap around `pole`, three far items around its antipode: no bulk
    # item has a far one among its 5 nearest, so only the row maxima can see them.
    pole = np.zeros(8)
    pole[0] = 3.0
    bulk = clustered(num=50, seed=4) + pole
    far = -pole + 0.3 * np.random.default_rng(5).normal(size=(3, 8))
    joint = np.concatenate([bulk, far])
    joint = (joint / np.linalg.norm(joint, axis=1, keepdims=True)).astype(np.float32)
    items = joint[:50]
    probes, candidates = probe_lists(items, 14)
    with_far = rerank_candidates(joint, probes, candidates, k1=5, lam=0.3)
    np.testing.assert_allclose(with_far, dense_final(joint, probes, candidates, 5, 1, 0.3, "reference"), atol=1e-9)
    without = rerank_candidates(items, probes, candidates, k1=5, lam=0.3)
    valid = candidates >= 0
    assert np.abs(with_far[valid] - without[valid]).max() > 1e-3
    # The squared distance has no row maximum: the far items change nothing there.
    np.testing.assert_allclose(
        rerank_candidates(joint, probes, candidates, k1=5, lam=0.3, distance="squared"),
        rerank_candidates(items, probes, candidates, k1=5, lam=0.3, distance="squared"),
        rtol=0, atol=1e-12,
    )


def test_farthest_squared_distances__exact_over_the_whole_set():
    items = clustered(num=80, dim=6, seed=6).astype(np.float64)
    # Two near-antipodes of item 0 closer to each other than float32 can tell apart.
    twin = -items[0].copy()
    twin_b = twin + 1e-9 * np.arange(1, 7)
    x = np.concatenate([items, twin[None], twin_b[None], items[:2]])  # duplicates too
    exact = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1).max(axis=1)
    np.testing.assert_allclose(farthest_squared_distances(x), exact, rtol=0, atol=1e-13)
    subset = np.array([5, 0, 81, 5])
    np.testing.assert_allclose(farthest_squared_distances(x, subset), exact[subset], rtol=0, atol=1e-13)
    assert farthest_squared_distances(np.ones((4, 3))).tolist() == [0, 0, 0, 0]


def test_rerank_and_select__sfrs_settings_change_the_selection():
    """k1 = 20, k2 = 1, lambda = 0.1, 20 candidates, keep 10: the whole SFRS path.

    The dense final distances followed by the spec's rule give the expected selection;
    plain Euclidean order (re-ranking skipped) would keep the first 10 candidates, which
    differs in most rows here.
    """
    joint = clustered(num=150, dim=12, clusters=8, seed=7, spread=0.5)
    probes = np.arange(40)  # "queries" first, then the "database"
    d = ((joint[probes, None, :].astype(np.float64) - joint[None, 40:, :]) ** 2).sum(-1)
    candidates = 40 + np.argsort(d, axis=1, kind="stable")[:, :20]
    candidates[3, 12:] = -1  # a query with only 12 positives

    final = rerank_candidates(joint, probes, candidates)
    expected_final = dense_final(joint, probes, candidates, 20, 1, 0.1, "reference")
    np.testing.assert_allclose(final, expected_final, rtol=0, atol=1e-9)
    chosen = order_difficult_positives(candidates, final, keep=10)
    np.testing.assert_array_equal(chosen, spec_selection(candidates, expected_final, 10))
    differs = (chosen != candidates[:, :10]).any(axis=1)
    assert differs.sum() >= 20
    # Demoted candidates are dropped, so some rows keep fewer than 10.
    assert ((chosen == -1).sum(axis=1) > 0).sum() >= 5
    # The squared-distance option is a different selection on the same descriptors.
    squared = order_difficult_positives(candidates, rerank_candidates(joint, probes, candidates, distance="squared"), 10)
    assert (squared != chosen).any()


def test_rerank_candidates__accepts_a_precomputed_wider_graph():
    items = clustered(seed=8)
    probes, candidates = probe_lists(items, 18)
    graph = knn_graph(items, 12)
    for distance in ("reference", "squared"):
        got = rerank_candidates(items, probes, candidates, k1=6, k2=3, lam=0.1, graph=graph, distance=distance)
        np.testing.assert_allclose(got, dense_final(items, probes, candidates, 6, 3, 0.1, distance), atol=1e-9)


def test_rerank_candidates__padding_gets_inf_and_does_not_leak():
    items = clustered(seed=9)
    probes, candidates = probe_lists(items, 19)
    full = candidates[2:, :8]
    padded = full.copy()
    padded[0, 5:] = -1
    padded[3, :] = -1
    got = rerank_candidates(items, probes[2:], padded, k1=4, k2=3)
    assert np.all(np.isinf(got[0, 5:])) and np.all(np.isinf(got[3]))
    unpadded = rerank_candidates(items, probes[2:], full, k1=4, k2=3)
    keep = padded >= 0
    np.testing.assert_array_equal(got[keep], unpadded[keep])
    assert np.all(np.isinf(rerank_candidates(items, probes[:2], np.full((2, 3), -1))))


def test_rerank_candidates__rejects_bad_arguments():
    items = clustered(seed=0)
    probes, candidates = probe_lists(items, 10)
    with pytest.raises(ValueError, match="k2"):
        rerank_candidates(items, probes, candidates, k1=4, k2=6)
    with pytest.raises(ValueError, match="candidate ids"):
        rerank_candidates(items, probes, candidates + len(items), k1=4)
    with pytest.raises(ValueError, match="at least"):
        rerank_candidates(items[:5], probes[:1] % 5, candidates[:1] % 5, k1=20)
    with pytest.raises(ValueError, match="graph"):
        rerank_candidates(items, probes, candidates, k1=6, graph=knn_graph(items, 5))
    with pytest.raises(ValueError, match="distance"):
        rerank_candidates(items, probes, candidates, k1=4, distance="euclidean")


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


def test_knn_graph__orders_by_float64_distance_below_float32_resolution():
    """Nearly identical descriptors (an untrained network's): neighbour distances closer
    together than a float32 search resolves; the graph still follows the float64 order."""
    rng = np.random.default_rng(21)
    x = rng.normal(size=1024) + 1e-2 * rng.normal(size=(300, 1024))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    x64 = x.astype(np.float64)
    norms = (x64 * x64).sum(axis=1)
    exact = np.maximum(norms[:, None] + norms[None, :] - 2 * x64 @ x64.T, 0)  # float64 error ~1e-16
    np.fill_diagonal(exact, 0)
    expected = np.argsort(exact, axis=1, kind="stable")[:, :6]
    gaps = np.diff(np.take_along_axis(exact, expected, axis=1)[:, 1:], axis=1)
    assert np.median(gaps) < 1e-6  # float32 rounding of 2 - 2 x.y is ~1e-7
    distances, indices = knn_graph(x, 6)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(distances, np.take_along_axis(exact, expected, axis=1), rtol=1e-6, atol=0)


def test_knn_graph__rejects_k_larger_than_the_set():
    with pytest.raises(ValueError, match="k must"):
        knn_graph(clustered(num=4, dim=3), 5)


# Hand-computed cases of the selection rule. Candidates are given in Euclidean order, so
# a candidate's Euclidean rank is its column; promotion = Euclidean rank - re-ranked rank.
ORDER_CASES = {
    # re-ranked order 12, 11, 10, 13, 15, 14: promotions 10:-2 11:0 12:+2 13:0 14:-1 15:+1
    "promoted, then unchanged, demoted dropped": (
        [10, 11, 12, 13, 14, 15], [0.3, 0.2, 0.1, 0.4, 0.6, 0.5], 4, [12, 15, 11, 13],
    ),
    "same row, keep 2": ([10, 11, 12, 13, 14, 15], [0.3, 0.2, 0.1, 0.4, 0.6, 0.5], 2, [12, 15]),
    "same row, keep larger than what survives": (
        [10, 11, 12, 13, 14, 15], [0.3, 0.2, 0.1, 0.4, 0.6, 0.5], 8, [12, 15, 11, 13, -1, -1, -1, -1],
    ),
    # re-ranked 13, 10, 15, 11, 12, 14: promotions 10:-1 11:-2 12:-2 13:+3 14:-1 15:+3
    "equal promotions: better re-ranked rank first": (
        [10, 11, 12, 13, 14, 15], [0.2, 0.4, 0.5, 0.1, 0.9, 0.3], 6, [13, 15, -1, -1, -1, -1],
    ),
    # pairwise swaps: 21, 23, 25 each promoted by 1; 20, 22, 24 demoted by 1
    "three equal promotions": ([20, 21, 22, 23, 24, 25], [0.2, 0.1, 0.4, 0.3, 0.6, 0.5], 6, [21, 23, 25, -1, -1, -1]),
    # reversal: 43:+3, 42:+1, 41:-1, 40:-3
    "reversed order": ([40, 41, 42, 43], [0.4, 0.3, 0.2, 0.1], 4, [43, 42, -1, -1]),
    "nothing moves: the nearest, in order (generation 0)": ([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4], 3, [1, 2, 3]),
    # padding's distance (even 0, even nan) takes no rank: 31 and 32 promoted by 1, 30 demoted
    "padding ignored": ([30, 31, 32, -1, -1], [0.3, 0.1, 0.2, 0.0, np.nan], 4, [31, 32, -1, -1]),
    "all padding": ([-1, -1, -1], [np.inf, np.inf, np.inf], 2, [-1, -1]),
    # equal final distances keep the Euclidean order: nothing moves
    "ties in final distance are unchanged": ([7, 8, 9], [0.2, 0.2, 0.2], 3, [7, 8, 9]),
    # 9 first (+2); 7 and 8 tie at 0.5 and keep Euclidean order behind it: both demoted
    "ties after a promotion": ([7, 8, 9], [0.5, 0.5, 0.1], 3, [9, -1, -1]),
}


@pytest.mark.parametrize("name", list(ORDER_CASES))
def test_order_difficult_positives__hand_computed(name):
    candidates, final, keep, expected = ORDER_CASES[name]
    out = order_difficult_positives(np.array([candidates]), np.array([final], dtype=np.float64), keep)
    assert out.dtype == np.int64 and out.shape == (1, keep)
    np.testing.assert_array_equal(out[0], expected)


def test_order_difficult_positives__rows_are_independent_and_keep_zero_works():
    rows = [ORDER_CASES["promoted, then unchanged, demoted dropped"], ORDER_CASES["reversed order"]]
    candidates = np.full((2, 6), -1)
    final = np.full((2, 6), np.inf)
    for r, (ids, dists, _, _) in enumerate(rows):
        candidates[r, : len(ids)] = ids
        final[r, : len(dists)] = dists
    out = order_difficult_positives(candidates, final, keep=4)
    np.testing.assert_array_equal(out, [[12, 15, 11, 13], [43, 42, -1, -1]])
    assert order_difficult_positives(candidates, final, keep=0).shape == (2, 0)


def test_order_difficult_positives__matches_the_list_rule_on_random_rows():
    rng = np.random.default_rng(20)
    width = 20
    candidates = np.tile(np.arange(100, 100 + width), (400, 1))
    lengths = rng.integers(0, width + 1, size=400)
    candidates[np.arange(width)[None, :] >= lengths[:, None]] = -1
    # Few distinct values: many ties in final distance and in promotion.
    final = rng.integers(0, 6, size=candidates.shape).astype(np.float64)
    final[200:] = rng.random(size=(200, width))  # and continuous ones
    for keep in (10, 25):
        np.testing.assert_array_equal(
            order_difficult_positives(candidates, final, keep), spec_selection(candidates, final, keep)
        )


def test_order_difficult_positives__rejects_non_finite_valid_distances():
    with pytest.raises(ValueError, match="finite"):
        order_difficult_positives(np.array([[1, 2]]), np.array([[0.1, np.nan]]), keep=2)
