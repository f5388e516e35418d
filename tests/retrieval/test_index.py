"""search(): exact Flat against numpy brute force; approximate indexes against exact."""
import numpy as np
import pytest

import sfrs.retrieval.index as index_module
from sfrs.retrieval.index import build_index, search


def brute_force(queries, database, k):
    """Reference: full float64 squared-distance matrix, stable argsort."""
    q = queries.astype(np.float64)
    d = database.astype(np.float64)
    dist = ((q[:, None, :] - d[None, :, :]) ** 2).sum(-1)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, axis=1), order, dist


def clustered(rng, num, dim=32, centres=20, intrinsic=6):
    """Clusters of points on a random low-dimensional subspace (neighbours are well defined)."""
    basis = np.random.default_rng(123).normal(size=(intrinsic, dim))
    centre = np.random.default_rng(456).normal(size=(centres, intrinsic)) * 4
    latent = centre[rng.integers(0, centres, num)] + rng.normal(size=(num, intrinsic))
    return (latent @ basis + 0.05 * rng.normal(size=(num, dim))).astype(np.float32)


def test_search__flat_matches_numpy_brute_force():
    rng = np.random.default_rng(0)
    database = rng.normal(size=(400, 24)).astype(np.float32)
    queries = rng.normal(size=(60, 24)).astype(np.float32)
    ref_dist, ref_idx, full = brute_force(queries, database, 10)
    # The reference is unambiguous only without near-ties around the top 11 ranks.
    top = np.sort(full, axis=1)[:, :11]
    assert np.diff(top, axis=1).min() > 1e-4
    dist, idx = search(queries, database, k=10)
    assert dist.dtype == np.float32 and idx.dtype == np.int64 and idx.shape == (60, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4, atol=1e-4)


def test_search__query_batches_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(1)
    database = rng.normal(size=(100, 8)).astype(np.float32)
    queries = rng.normal(size=(23, 8)).astype(np.float32)
    expected = search(queries, database, k=5)
    monkeypatch.setattr(index_module, "QUERY_BATCH", 4)
    got = search(queries, database, k=5)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[0], expected[0])


def test_search__k_larger_than_database_is_clipped_without_padding():
    rng = np.random.default_rng(2)
    database = rng.normal(size=(7, 4)).astype(np.float32)
    queries = rng.normal(size=(3, 4))  # float64 is accepted
    dist, idx = search(queries, database, k=20)
    assert idx.shape == (3, 7) and dist.shape == (3, 7)
    assert (np.sort(idx, axis=1) == np.arange(7)).all()
    np.testing.assert_array_equal(idx, brute_force(queries, database, 7)[1])


@pytest.mark.parametrize("factory", ["HNSW32", "IVF16,Flat", "PCA16,HNSW32"])
def test_search__approximate_indexes_find_most_exact_neighbours(factory):
    rng = np.random.default_rng(3)
    database = clustered(rng, 3000)
    queries = clustered(rng, 200)
    _, exact = search(queries, database, k=10)
    _, approx = search(queries, database, k=10, index=factory, nprobe=4)
    overlap = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert overlap > 0.9, f"{factory}: {overlap:.2f}"


def test_search__hnsw_returns_k_valid_neighbours_even_when_k_exceeds_ef_search():
    database = clustered(np.random.default_rng(6), 1000)
    _, idx = search(database[:10], database, k=100, index="HNSW32", ef_search=8)
    assert idx.shape == (10, 100) and (idx >= 0).all()
    assert all(len(set(row)) == 100 for row in idx)


def test_search__trains_on_the_given_training_set():
    rng = np.random.default_rng(4)
    train = clustered(rng, 1000)
    database = clustered(rng, 50)  # too few vectors to train 16 lists by themselves
    with pytest.raises(ValueError, match="could not be trained on 50 vectors"):
        search(database[:5], database, k=3, index="IVF64,Flat")
    _, idx = search(database[:5], database, k=1, index="IVF16,Flat", train=train, nprobe=16)
    np.testing.assert_array_equal(idx[:, 0], np.arange(5))


def test_build_index__holds_the_database():
    database = np.random.default_rng(5).normal(size=(30, 6)).astype(np.float32)
    built = build_index(database, "Flat")
    assert built.ntotal == 30 and built.d == 6


@pytest.mark.parametrize(
    "queries, database, k, message",
    [
        (np.zeros((2, 4), np.float32), np.zeros((5, 3), np.float32), 1, "dimension 4 but the database has 3"),
        (np.zeros(4, np.float32), np.zeros((5, 4), np.float32), 1, "2-d array"),
        (np.zeros((2, 4), np.int64), np.zeros((5, 4), np.float32), 1, "floating-point"),
        (np.full((2, 4), np.nan, np.float32), np.zeros((5, 4), np.float32), 1, "NaN"),
        (np.zeros((2, 4), np.float32), np.zeros((5, 4), np.float32), 0, "positive integer"),
        (np.zeros((2, 4), np.float32), np.zeros((0, 4), np.float32), 1, "empty"),
    ],
)
def test_search__invalid_inputs_raise_clear_value_errors(queries, database, k, message):
    with pytest.raises(ValueError, match=message):
        search(queries, database, k)


def test_search__unknown_factory_string_is_a_value_error():
    with pytest.raises(ValueError, match="Bogus"):
        search(np.zeros((1, 4), np.float32), np.zeros((3, 4), np.float32), 1, index="Bogus")
