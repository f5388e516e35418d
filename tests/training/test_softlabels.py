import numpy as np
import pytest
import torch

from sfrs.config import Config, build_config
from sfrs.data import load_image, open_dataset
from sfrs.errors import DataError
from sfrs.models import build_network
from sfrs.training.difficult import lookup_labels
from sfrs.training.softlabels import SoftLabels, read_soft_labels, write_soft_labels
from sfrs.training.teacher import region_similarities
from tests.tiny import TINY_MODEL


def test_soft_labels__round_trip(tmp_path):
    rng = np.random.default_rng(0)
    labels = SoftLabels(
        query_ids=np.arange(5), positive_ids=rng.integers(-1, 50, size=(5, 3)),
        similarities=rng.normal(size=(5, 3, 9)).astype(np.float32), teacher_temperature=0.06,
        fingerprint="abc", generation=2,
    )
    path = tmp_path / "gen2.h5"
    write_soft_labels(path, labels)
    back = read_soft_labels(path, "abc")
    assert np.array_equal(back.positive_ids, labels.positive_ids)
    assert np.array_equal(back.similarities, labels.similarities)
    assert (back.teacher_temperature, back.generation) == (0.06, 2)
    with pytest.raises(DataError, match="another teacher"):
        read_soft_labels(path, "other")


def test_region_similarities__match_per_image_region_descriptors(tiny_city_root):
    split = open_dataset("synthetic:tiny", "train")
    torch.manual_seed(0)
    model = build_network(build_config(Config, overrides=TINY_MODEL).model).eval()
    transform = model.transform()
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(4, model.head_dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    positive_ids = np.array([[0, 5, -1], [5, 7, 9], [-1, -1, -1], [3, 0, 2]])
    got = region_similarities(model, queries, split.database_paths, positive_ids, batch_size=3, progress=False)
    for q in range(4):
        for slot, db in enumerate(positive_ids[q]):
            if db < 0:
                assert np.all(got[q, slot] == 0)
                continue
            with torch.no_grad():
                regions = model.region_descriptors(transform(load_image(split.database_paths[db]))[None])[0]
            expected = regions.double().numpy() @ queries[q].astype(np.float64)
            np.testing.assert_allclose(got[q, slot], expected, atol=1e-5)


def test_lookup_labels__finds_each_picked_positive_in_its_query_row():
    rng = np.random.default_rng(1)
    labels = SoftLabels(
        query_ids=np.arange(3), positive_ids=np.array([[4, 9, 2, -1], [7, 1, -1, -1], [5, 6, 8, 3]]),
        similarities=rng.normal(size=(3, 4, 9)).astype(np.float32), teacher_temperature=0.07,
        fingerprint="", generation=1,
    )
    rows = np.array([2, 0])
    picked = np.array([[3, 5, -1], [2, 4, 9]])
    got = lookup_labels(labels, rows, picked)
    for i, row in enumerate(rows):
        for m, db in enumerate(picked[i]):
            if db < 0:
                assert np.all(got[i, m] == 0)
            else:
                column = list(labels.positive_ids[row]).index(db)
                assert np.array_equal(got[i, m], labels.similarities[row, column])
    with pytest.raises(DataError, match="no label for query row 0, database image 7"):
        lookup_labels(labels, np.array([0]), np.array([[7]]))
