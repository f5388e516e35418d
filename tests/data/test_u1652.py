"""University-1652 reader on a tiny tree written in the data set's layout."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sfrs.data import describe_dataset_spec, open_dataset
from sfrs.data.formats import dataset_spec_help
from sfrs.data.formats.u1652 import building_northings, read_u1652, view_names
from sfrs.errors import DataError

#: view folder -> {building: number of images}
TRAIN = {"drone": {"0001": 3, "0002": 2, "0007": 2}, "satellite": {"0001": 1, "0002": 1, "0007": 1}, "street": {"0001": 1}}
TEST = {
    "query_drone": {"0100": 2, "0101": 2},
    "gallery_satellite": {"0100": 1, "0101": 1, "0150": 1},  # 0150: a distractor without queries
    "query_satellite": {"0100": 1, "0101": 1},
    "gallery_drone": {"0100": 2, "0101": 2, "0150": 2},
}


def write_tree(root: Path, split: str, views: dict) -> None:
    for view, buildings in views.items():
        for building, count in buildings.items():
            folder = root / split / view / building
            folder.mkdir(parents=True)
            for k in range(count):
                suffix = ".jpg" if view.endswith("satellite") else ".jpeg"
                name = f"{building}{suffix}" if view.endswith("satellite") else f"image-{k + 1:02d}{suffix}"
                Image.new("RGB", (8, 8), (k * 40, 0, 0)).save(folder / name)


@pytest.fixture
def u1652(tmp_path) -> Path:
    root = tmp_path / "University-Release"
    write_tree(root, "train", TRAIN)
    write_tree(root, "test", TEST)
    return root


def building(path: str) -> str:
    return Path(path).parent.name


def test_train__drone_queries_satellite_database_same_building_positives(u1652):
    split = open_dataset(f"u1652:{u1652}", "train")
    assert [Path(p).relative_to(u1652 / "train").as_posix() for p in split.database_paths] == [
        "satellite/0001/0001.jpg", "satellite/0002/0002.jpg", "satellite/0007/0007.jpg"]
    assert split.num_queries == 7 and all("/drone/" in p for p in split.query_paths)
    for q, positives in enumerate(split.positives(25.0)):
        assert [building(split.database_paths[i]) for i in positives] == [building(split.query_paths[q])]
    np.testing.assert_array_equal(split.database_utm, [[0, 1000], [0, 2000], [0, 7000]])
    np.testing.assert_array_equal(split.database_place_ids, [0, 1, 2])
    assert split.dataset == "university1652 (drone->satellite)" and "drone (3 buildings)" in split.protocol


def test_test__both_directions_and_distractor_buildings(u1652):
    d2s = open_dataset(f"u1652:{u1652}", "test")
    assert d2s.num_queries == 4 and d2s.num_database == 3
    assert [len(p) for p in d2s.positives(25.0)] == [1, 1, 1, 1]
    s2d = open_dataset(f"u1652:{u1652}", "test", protocol="satellite->drone")
    assert s2d.num_queries == 2 and s2d.num_database == 6
    for q, positives in enumerate(s2d.positives(25.0)):
        assert {building(s2d.database_paths[i]) for i in positives} == {building(s2d.query_paths[q])}
        assert len(positives) == 2
    assert view_names("satellite->drone") == ("satellite", "drone")


def test_plain_folder_in_the_layout__is_detected_and_described(u1652):
    assert open_dataset(str(u1652), "train").num_database == 3
    assert "University-1652" in describe_dataset_spec(f"u1652:{u1652}")
    assert "u1652:<folder>" in dataset_spec_help()


def test_non_numeric_building_names__are_ranked():
    assert building_northings(["b", "a", "b"]) == {"a": 0.0, "b": 1000.0}
    assert building_northings(["0003", "0010"]) == {"0003": 3000.0, "0010": 10000.0}


def test_bad_input__one_line_errors_naming_the_path(u1652, tmp_path):
    with pytest.raises(DataError, match=r"split 'val' not found \(splits present: train, test\)"):
        open_dataset(f"u1652:{u1652}", "val")
    with pytest.raises(DataError, match="unknown direction 'up->down'"):
        open_dataset(f"u1652:{u1652}", "train", protocol="up->down")
    with pytest.raises(DataError, match="missing folder after 'u1652:'"):
        open_dataset("u1652:", "train")
    with pytest.raises(DataError, match="nowhere: University-1652 root not found"):
        read_u1652(tmp_path / "nowhere", "train")
    (u1652 / "test" / "query_satellite").rename(u1652 / "test" / "query_sat")
    with pytest.raises(DataError, match="query_satellite: University-1652 view folder not found"):
        open_dataset(f"u1652:{u1652}", "test", protocol="satellite->drone")
    empty = tmp_path / "empty"
    (empty / "train" / "drone" / "0001").mkdir(parents=True)
    (empty / "train" / "satellite").mkdir(parents=True)
    with pytest.raises(DataError, match=r"drone: no \.jpg/\.jpeg/\.png images"):
        open_dataset(f"u1652:{empty}", "train")
