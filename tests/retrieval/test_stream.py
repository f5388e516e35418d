"""Streaming, resumable HDF5 extraction and the chunked search that reads it."""
import h5py
import numpy as np
import pytest
import torch

import sfrs.retrieval.extract as extract_module
from sfrs.config import Config, build_config
from sfrs.data import open_dataset
from sfrs.errors import DataError
from sfrs.models import build_network
from sfrs.retrieval.extract import extract_descriptors
from sfrs.retrieval.index import search
from sfrs.retrieval.recall import recall_at_n
from sfrs.retrieval.stream import (
    HDF5Descriptors,
    descriptor_fingerprint,
    extract_to_hdf5,
    search_hdf5,
)
from sfrs.utils.hashing import model_fingerprint as model_weights_hash
from tests.tiny import TINY_MODEL


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_network(build_config(Config, None, TINY_MODEL).model).eval()


@pytest.fixture(scope="module")
def split(tiny_city_root):
    return open_dataset("synthetic:tiny", "test")


def fingerprint_of(model, paths, half=False):
    return descriptor_fingerprint(model_weights_hash(model), paths, model.transform(), np.float16 if half else np.float32)


def stream(model, paths, path, name="database", half=False, **kwargs):
    return extract_to_hdf5(
        model, paths, model.transform(), path, name, fingerprint=fingerprint_of(model, paths, half),
        batch_size=8, half=half, progress=False, **kwargs,
    )


def test_streamed_extraction_and_chunked_search__same_recalls_as_in_memory(model, split, tmp_path):
    in_db = extract_descriptors(model, split.database_paths, model.transform(), batch_size=8, progress=False)
    in_q = extract_descriptors(model, split.query_paths, model.transform(), batch_size=8, progress=False)
    db = stream(model, split.database_paths, tmp_path / "db.h5")
    queries = stream(model, split.query_paths, tmp_path / "q.h5", name="queries")
    assert isinstance(db, HDF5Descriptors) and db.shape == in_db.shape and db.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(db), in_db)

    _, expected = search(in_q, in_db, k=20)
    _, got = search_hdf5(queries, db, 20, chunk=16)  # 80 rows in 5 chunks, 40 queries in 3
    np.testing.assert_array_equal(got, expected)
    positives = split.positives(25.0)
    assert recall_at_n(got, positives) == recall_at_n(expected, positives)


def test_chunked_search__trains_ivf_on_a_sample_like_an_in_memory_index():
    rng = np.random.default_rng(0)
    database = rng.normal(size=(500, 8)).astype(np.float32)
    queries = rng.normal(size=(30, 8)).astype(np.float32)
    # nprobe = nlist makes IVF exact, so only correctness of the chunked add is tested.
    _, got = search_hdf5(queries, database, 5, index="IVF4,Flat", chunk=64, nprobe=4)
    _, expected = search(queries, database, k=5)
    np.testing.assert_array_equal(got, expected)


def test_interrupted_extraction__resumes_at_recorded_rows_with_identical_descriptors(model, split, tmp_path, monkeypatch):
    paths = list(split.database_paths)[:48]
    reference = stream(model, paths, tmp_path / "reference.h5")

    original = extract_module._describe
    calls = {"n": 0}

    def crash_after_three_batches(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt("simulated interruption")
        return original(*args, **kwargs)

    monkeypatch.setattr(extract_module, "_describe", crash_after_three_batches)
    with pytest.raises(KeyboardInterrupt):
        stream(model, paths, tmp_path / "resumed.h5", chunk=8)
    with h5py.File(tmp_path / "resumed.h5", "r") as handle:
        assert handle["database"].attrs["rows_done"] == 24

    calls["n"] = -100  # no more crashes; count the batches the rerun needs
    resumed = stream(model, paths, tmp_path / "resumed.h5", chunk=8)
    assert calls["n"] == -100 + (48 - 24) // 8
    np.testing.assert_array_equal(np.asarray(resumed), np.asarray(reference))

    stream(model, paths, tmp_path / "resumed.h5")  # finished: the model does not run again
    assert calls["n"] == -100 + 3


def test_other_fingerprint__starts_over_or_refuses(model, split, tmp_path):
    paths = list(split.database_paths)[:8]
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as handle:
        stale = handle.create_dataset("database", data=np.zeros((8, model.out_dim), np.float32))
        stale.attrs["fingerprint"] = "another-model"
        stale.attrs["rows_done"] = 8
    with pytest.raises(DataError, match="another model.*delete the file"):
        stream(model, paths, path, on_mismatch="refuse")
    fresh = stream(model, paths, path)
    assert fresh.fingerprint == fingerprint_of(model, paths)
    expected = extract_descriptors(model, paths, model.transform(), batch_size=8, progress=False)
    np.testing.assert_array_equal(np.asarray(fresh), expected)


def test_half__float16_file_close_to_float32(model, split, tmp_path):
    paths = list(split.query_paths)[:16]
    full = stream(model, paths, tmp_path / "f32.h5")
    half = stream(model, paths, tmp_path / "f16.h5", half=True)
    assert half.dtype == np.float16
    assert half.fingerprint != full.fingerprint  # the dtype is part of what produced the rows
    np.testing.assert_allclose(np.asarray(half).astype(np.float32), np.asarray(full), atol=2e-3)
