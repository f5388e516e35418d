"""open_dataset picks the reader from the spec: synthetic, VG folder or NetVLAD .mat."""
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from sfrs.data import describe_dataset_spec, open_dataset
from sfrs.errors import DataError


def make_vg(root: Path, split="test") -> Path:
    for subset, north in (("database", 0), ("queries", 5)):
        path = root / "images" / split / subset / f"@100@{north}@@@@@@@@@@@@@.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


@pytest.fixture
def fake_synthetic(monkeypatch, tmp_path):
    """A stand-in for sfrs.data.synthetic that records its calls and serves a tiny VG folder."""
    calls = []

    def ensure_synthetic(size="small", seed=0, cache_dir=None, progress=True, occlusion=0.0):
        calls.append(size)
        return make_vg(tmp_path / f"synthetic_{size}")

    module = types.ModuleType("sfrs.data.synthetic")
    module.ensure_synthetic = ensure_synthetic
    monkeypatch.setitem(sys.modules, "sfrs.data.synthetic", module)
    return calls


@pytest.mark.parametrize("spec, size", [("synthetic", "small"), ("synthetic:tiny", "tiny")])
def test_open_dataset__synthetic_spec_reads_the_generated_vg_folder(fake_synthetic, spec, size):
    split = open_dataset(spec, "test")
    assert fake_synthetic == [size]
    assert split.dataset == f"synthetic:{size}" and split.num_database == 1


def test_open_dataset__directory_is_a_vg_folder(tmp_path):
    split = open_dataset(str(make_vg(tmp_path / "pitts30k")), "test")
    assert split.dataset == "pitts30k" and split.split == "test"


def test_open_dataset__mat_needs_images_root_and_a_matching_split(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a_1.jpg").write_bytes(b"")
    (tmp_path / "q.jpg").write_bytes(b"")
    mat = tmp_path / "pitts30k_val.mat"
    scipy.io.savemat(str(mat), {"dbStruct": {
        "whichSet": "val", "dbImageFns": np.array(["a_1.jpg"], dtype=object).reshape(-1, 1),
        "utmDb": np.zeros((2, 1)), "qImageFns": np.array(["q.jpg"], dtype=object).reshape(-1, 1),
        "utmQ": np.ones((2, 1)),
    }})
    with pytest.raises(DataError, match="--images-root"):
        open_dataset(str(mat), "val")
    with pytest.raises(DataError, match="describes split 'val'.*'train' was requested"):
        open_dataset(str(mat), "train", str(tmp_path))
    split = open_dataset(str(mat), "val", str(tmp_path))
    assert split.dataset == "pitts30k" and split.num_queries == 1
    per_split = open_dataset(str(tmp_path / "pitts30k_{split}.mat"), "val", str(tmp_path))
    assert per_split.database_paths == split.database_paths
    with pytest.raises(DataError, match="pitts30k_test.mat: data set not found"):
        open_dataset(str(tmp_path / "pitts30k_{split}.mat"), "test", str(tmp_path))


def test_open_dataset__missing_path_or_other_file_raises(tmp_path):
    with pytest.raises(DataError, match="data set not found"):
        open_dataset(str(tmp_path / "nope"), "test")
    other = tmp_path / "list.txt"
    other.write_text("x")
    with pytest.raises(DataError, match="not a data set"):
        open_dataset(str(other), "test")


def test_describe_dataset_spec__names_the_reader():
    assert "synthetic city 'small'" in describe_dataset_spec("synthetic")
    assert "NetVLAD" in describe_dataset_spec("/data/pitts30k_test.mat")
    assert "VG folder" in describe_dataset_spec("/data/pitts30k")
