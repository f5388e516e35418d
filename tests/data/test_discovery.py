"""Discovery of benchmarks under a datasets root (every registered format is asked)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from sfrs.data import find_dataset_at, find_datasets, open_dataset
from sfrs.errors import DataError
from tests.data.test_msls import make_msls_city

TOKYO_DB = ["00001/00001_000.jpg", "00001/00001_001.jpg", "00002/00002_000.jpg"]
TOKYO_Q = ["q_0001.jpg", "q_0002.jpg"]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def make_vg(folder: Path, splits=("test",)) -> Path:
    for split in splits:
        for subset, north in (("database", 0), ("queries", 5)):
            touch(folder / "images" / split / subset / f"@500000@{north}@17@T@@@@@@@@@@@.jpg")
    return folder


def make_tokyo(folder: Path, stem: str = "tokyo247") -> Path:
    """<stem>.mat (real nested dbStruct layout, no split in the name) + images next to it."""
    for name in TOKYO_DB:  # database .png although the .mat says .jpg, as in the real data
        touch(folder / "images" / name.replace(".jpg", ".png"))
    for name in TOKYO_Q:
        touch(folder / "query" / name)
    scipy.io.savemat(str(folder / f"{stem}.mat"), {"dbStruct": {
        "whichSet": "test",
        "dbImageFns": np.array(TOKYO_DB, dtype=object).reshape(-1, 1),
        "utmDb": np.array([[0.0, 0.0, 100.0], [0.0, 1.0, 0.0]]),
        "qImageFns": np.array(TOKYO_Q, dtype=object).reshape(-1, 1),
        "utmQ": np.array([[0.0, 100.0], [3.0, 2.0]]),
        "numImages": 3.0,
        "numQueries": 2.0,
        "posDistThr": 25.0,
        "posDistSqThr": 625.0,
        "nonTrivPosDistSqThr": 100.0,
    }})
    return folder


@pytest.fixture
def datasets_root(tmp_path) -> Path:
    root = tmp_path / "datasets"
    make_vg(root / "pitts30k")
    make_tokyo(root / "tokyo247")
    for city in ("cph", "sf"):
        make_msls_city(root / "mapillary", "train_val", city)
    make_vg(root / "holiday_photos")  # VG-shaped, no benchmark of that name: a data set all the same
    touch(root / "notes" / "readme.txt")
    touch(root / "pitts30k_test.mat")  # a file at the root, not a folder: ignored
    return root


def test_find_datasets__finds_vg_mat_msls_and_any_vg_folder_and_ignores_other_folders(datasets_root):
    found = find_datasets(datasets_root)
    assert sorted(found) == ["holiday_photos", "msls_val", "pitts30k", "tokyo247"]
    holiday = found["holiday_photos"]
    assert (holiday.layout, holiday.split, holiday.path) == ("vg", "test", datasets_root / "holiday_photos")
    assert not holiday.conventions.known and found["pitts30k"].conventions.known

    pitts = found["pitts30k"]
    assert (pitts.layout, pitts.split, pitts.images_root) == ("vg", "test", None)
    assert pitts.path == datasets_root / "pitts30k"

    tokyo = found["tokyo247"]
    assert (tokyo.layout, tokyo.split) == ("mat", "test")
    assert tokyo.spec == str(datasets_root / "tokyo247" / "tokyo247.mat")
    assert tokyo.images_root == str(datasets_root / "tokyo247")
    assert tokyo.conventions.nms

    msls = found["msls_val"]
    assert (msls.layout, msls.split, msls.spec) == ("msls", "val", f"msls:{datasets_root / 'mapillary'}")


def test_find_datasets__every_location_opens_with_open_dataset(datasets_root):
    found = find_datasets(datasets_root)
    splits = {name: open_dataset(loc.spec, loc.split, loc.images_root) for name, loc in found.items()}
    assert (splits["pitts30k"].num_database, splits["pitts30k"].num_queries) == (1, 1)
    tokyo = splits["tokyo247"]
    assert tokyo.database_paths[0].endswith("00001_000.png")
    ids = tokyo.database_place_ids  # views of one panorama share a place id: NMS works
    assert ids[0] == ids[1] != ids[2]
    assert splits["msls_val"].num_queries == 2 and "official protocol" in splits["msls_val"].protocol


def test_find_datasets__vg_folder_with_only_val_and_mat_split_preference(tmp_path):
    make_vg(tmp_path / "Pittsburgh30k", splits=("train", "val"))
    for split in ("train", "val", "test"):
        touch(tmp_path / "pittsburgh" / f"pitts250k_{split}.mat")
    touch(tmp_path / "pittsburgh" / "tokyoTM_val.mat")  # not a benchmark here
    found = find_datasets(tmp_path)
    assert sorted(found) == ["pitts250k", "pitts30k"]
    assert (found["pitts30k"].layout, found["pitts30k"].split) == ("vg", "val")
    assert found["pitts250k"].split == "test"
    assert found["pitts250k"].path == tmp_path / "pittsburgh" / "pitts250k_test.mat"


def test_find_datasets__native_msls_is_preferred_to_a_converted_vg_folder(tmp_path):
    make_vg(tmp_path / "msls", splits=("train", "val"))
    for city in ("cph", "sf"):
        make_msls_city(tmp_path / "msls_native", "train_val", city)
    found = find_datasets(tmp_path)
    assert found["msls_val"].layout == "msls" and found["msls_val"].path == tmp_path / "msls_native"
    (tmp_path / "msls_native" / "train_val" / "sf").rename(tmp_path / "msls_native" / "train_val" / "oslo")
    fallback = find_datasets(tmp_path)["msls_val"]  # native copy lacks sf: the VG folder is used
    assert (fallback.layout, fallback.split) == ("vg", "val")


def test_find_datasets__missing_root_raises(tmp_path):
    with pytest.raises(DataError, match="datasets root is not a folder"):
        find_datasets(tmp_path / "nope")


def test_find_datasets__any_mat_with_a_readable_db_struct_is_found_under_its_stem(tmp_path):
    make_tokyo(tmp_path / "mine", stem="my_city_test")
    touch(tmp_path / "mine" / "calibration.mat")  # not a dbStruct: not a data set
    found = find_datasets(tmp_path)
    assert sorted(found) == ["my_city"]
    mine = found["my_city"]
    assert (mine.layout, mine.split, mine.images_root) == ("mat", "test", str(tmp_path / "mine"))
    split = open_dataset(mine.spec, mine.split, mine.images_root)
    assert split.dataset == "my_city" and split.num_queries == 2


def test_find_dataset_at__a_folder_or_a_mat_file_outside_any_root(tmp_path):
    make_vg(tmp_path / "elsewhere" / "my_city", splits=("val",))
    make_tokyo(tmp_path / "tokyo_copy")
    assert {n: (loc.layout, loc.split) for n, loc in find_dataset_at(tmp_path / "elsewhere" / "my_city").items()} == {
        "my_city": ("vg", "val")}
    assert list(find_dataset_at(tmp_path / "tokyo_copy" / "tokyo247.mat")) == ["tokyo247"]
    assert find_dataset_at(tmp_path / "elsewhere") == {}
    with pytest.raises(DataError, match="no such file or folder"):
        find_dataset_at(tmp_path / "nope")
