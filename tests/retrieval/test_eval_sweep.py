"""Evaluation-only sweeps: the threshold sweep against a naive recall loop on planted
descriptors and UTMs, PCA leading components against separate float64 fits, and one tiny
real sweep per key with an untrained model on synthetic:tiny."""
import json

import numpy as np
import pytest

from sfrs.data import Split, open_dataset
from sfrs.errors import ConfigError
from sfrs.models import load_network
from sfrs.retrieval import evaluate, fit_model_pca, fit_pca_whitening
from sfrs.retrieval.eval_sweep import leading_components, parse_sweep, run_eval_sweep, threshold_rows

PNG_MAGIC = b"\x89PNG"


def planted_split(num_db=40, num_q=15, seed=0):
    rng = np.random.default_rng(seed)
    database_utm = rng.uniform(0, 200, size=(num_db, 2))
    query_utm = rng.uniform(0, 200, size=(num_q, 2))
    return Split("planted", "test", [f"db{i}.jpg" for i in range(num_db)], [f"q{i}.jpg" for i in range(num_q)],
                 database_utm, query_utm)


def naive_recall(database, queries, database_utm, query_utm, radius, n):
    """Percent of queries with a database image within ``radius`` metres among their n
    nearest descriptors (float64 squared L2, every pair)."""
    hits = 0
    for q in range(len(queries)):
        distances = [float(np.sum((queries[q].astype(np.float64) - d.astype(np.float64)) ** 2)) for d in database]
        nearest = np.argsort(distances, kind="stable")[:n]
        if any(np.hypot(*(database_utm[i] - query_utm[q])) <= radius for i in nearest):
            hits += 1
    return 100.0 * hits / len(queries)


def test_threshold_sweep__matches_a_naive_recall_loop_at_every_radius():
    split = planted_split()
    rng = np.random.default_rng(1)
    database = rng.normal(size=(split.num_database, 8)).astype(np.float32)
    queries = rng.normal(size=(split.num_queries, 8)).astype(np.float32)
    # Make some queries near their own place's descriptors so recall is not all zeros.
    queries[:8] = database[:8] + 0.05 * rng.normal(size=(8, 8)).astype(np.float32)
    split = Split(split.dataset, split.split, split.database_paths, split.query_paths, split.database_utm,
                  np.vstack([split.database_utm[:8] + 3.0, split.query_utm[8:]]))
    radii = [5.0, 10.0, 25.0, 50.0]
    rows = threshold_rows(split, database, queries, radii, ns=(1, 5, 10))
    assert [row["threshold_m"] for row in rows] == radii
    for row, radius in zip(rows, radii):
        for n in (1, 5, 10):
            expected = naive_recall(database, queries, split.database_utm, split.query_utm, radius, n)
            assert row["recall"][str(n)] == pytest.approx(expected)
    assert rows[0]["recall"]["1"] < rows[-1]["recall"]["10"]


def reference_whitening(x, dim, eps=1e-9):
    """float64 PCA-whitening fitted at ``dim``: top eigenvectors of the covariance (N - 1),
    each divided by sqrt(eigenvalue + eps), by decreasing eigenvalue."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    covariance = centred.T @ centred / (len(x) - 1)
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1][:dim]
    return mean, vectors[:, order] / np.sqrt(values[order] + eps)


@pytest.mark.parametrize("num, in_dim, dims", [(80, 12, (2, 5, 9)), (10, 30, (3, 6, 9))])
def test_leading_components__equal_separate_fits_at_each_dimension_up_to_sign(num, in_dim, dims):
    """Fitted once at max(dims) (covariance form when D <= N, dual Gram form otherwise),
    then truncated, against a float64 fit at each dimension."""
    rng = np.random.default_rng(0)
    # distinct eigenvalues: scaled axes
    x = rng.normal(size=(num, in_dim)) * np.linspace(3.0, 0.5, in_dim)
    fitted = fit_pca_whitening(x, max(dims))
    for dim in dims:
        mean, projection = reference_whitening(x, dim)
        truncated = leading_components(fitted, dim)
        ours = truncated.projection.double().numpy()
        assert ours.shape == projection.shape
        np.testing.assert_allclose(truncated.mean.double().numpy(), mean, atol=1e-5)
        signs = np.sign(np.sum(ours * projection, axis=0))
        np.testing.assert_allclose(ours * signs, projection, rtol=1e-3, atol=1e-4 * np.abs(projection).max())


def test_leading_components__refuses_a_dimension_not_fitted():
    fitted = fit_pca_whitening(np.random.default_rng(0).normal(size=(20, 6)), 4)
    with pytest.raises(ConfigError, match="outside 1..4"):
        leading_components(fitted, 5)


@pytest.mark.parametrize("text, key, values", [
    ("threshold=5,10,25,50", "threshold", [5.0, 10.0, 25.0, 50.0]),
    ("image_size=48x64,96x128", "image_size", [(48, 64), (96, 128)]),
    ("image_size=48,96", "image_size", [48, 96]),
    ("pca_dim=64, 128,256", "pca_dim", [64, 128, 256]),
])
def test_parse_sweep__keys_and_values(text, key, values):
    assert parse_sweep(text) == (key, values)


@pytest.mark.parametrize("text, message", [
    ("radius=5", "one of threshold"), ("threshold=5,-1", "'-1' is not"), ("image_size=48x", "'48x' is not"),
    ("pca_dim=", "no values"), ("pca_dim=8,8", "repeated"),
])
def test_parse_sweep__bad_input_is_a_config_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_sweep(text)


@pytest.fixture(scope="module")
def tiny(tiny_city_root, tiny_checkpoint):
    return load_network(tiny_checkpoint), open_dataset("synthetic:tiny", "test")


def test_real_threshold_sweep__one_extraction_and_the_convention_radius_equals_evaluate(tiny, tmp_path):
    model, split = tiny
    result = run_eval_sweep(model, split, "threshold", [10, 25, 50], batch_size=16, progress=False,
                            output_dir=tmp_path)
    reference = evaluate(model, split, batch_size=16, progress=False).report
    at_25 = result["rows"][1]
    assert at_25["threshold_m"] == reference["threshold_m"] == 25.0
    assert at_25["recall"] == pytest.approx(reference["recall"])
    r1 = [row["recall"]["1"] for row in result["rows"]]
    assert r1 == sorted(r1)  # a larger radius only adds positives
    assert json.loads((tmp_path / "sweep_threshold.json").read_text())["rows"][0]["label"] == "10 m"
    assert "| 50 m |" in (tmp_path / "sweep_threshold.md").read_text()
    assert (tmp_path / "sweep_threshold.png").read_bytes()[:4] == PNG_MAGIC


def test_real_image_size_sweep__each_size_extracted(tiny, tmp_path):
    model, split = tiny
    result = run_eval_sweep(model, split, "image_size", [(48, 64), 32], batch_size=16, progress=False,
                            output_dir=tmp_path)
    assert [row["label"] for row in result["rows"]] == ["48x64", "shorter side 32"]
    assert result["rows"][1]["database_images"] == "shorter side 32 px, aspect kept"
    reference = evaluate(model, split, batch_size=16, progress=False).report  # the model's own 48x64
    assert result["rows"][0]["recall"] == pytest.approx(reference["recall"])
    assert (tmp_path / "sweep_image_size.png").read_bytes()[:4] == PNG_MAGIC


def test_real_pca_sweep__dimensions_and_the_model_left_as_it_was(tiny, tmp_path):
    model, split = tiny
    train = open_dataset("synthetic:tiny", "train")
    result = run_eval_sweep(model, split, "pca_dim", [4, 16], batch_size=16, progress=False, output_dir=tmp_path,
                            train_split=train, pca_samples=60)
    assert [row["descriptor_dim"] for row in result["rows"]] == [4, 16]
    assert "fitted once on 60 descriptors" in result["pca"]
    assert model.pca is None
    # the leading 4 components of the fit at 16 rank as a separate fit at 4 does
    pca, _ = fit_model_pca(model, train, 4, samples=60, batch_size=16, progress=False)
    model.set_pca(pca)
    try:
        separate = evaluate(model, split, batch_size=16, progress=False).report
    finally:
        model.set_pca(None)
    assert result["rows"][0]["recall"] == pytest.approx(separate["recall"])
    assert (tmp_path / "sweep_pca_dim.md").is_file()
    with pytest.raises(ConfigError, match="training split"):
        run_eval_sweep(model, split, "pca_dim", [4], progress=False)
