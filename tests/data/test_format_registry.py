"""The format registry: detection order, and a format added from outside reaching every entry point."""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest
import scipy.io

from sfrs.data import (
    DatasetFormat,
    DatasetLocation,
    Split,
    dataset_spec_help,
    describe_dataset_spec,
    find_datasets,
    open_dataset,
    register_format,
    unregister_format,
)
from sfrs.data.formats import detect_format, registered_formats
from sfrs.errors import DataError
from tests.data.test_msls import make_msls_city

# -- a dummy format: "<folder>/places.csv" rows of (role, file, east, north) -------------------

PLACES_FILE = "places.csv"


def write_places(folder: Path) -> Path:
    """A tiny data set in the dummy layout: two database images, one query 5 m from the first."""
    rows = [("database", "a.png", 0.0, 0.0), ("database", "b.png", 100.0, 0.0), ("query", "q.png", 0.0, 5.0)]
    folder.mkdir(parents=True)
    for _, name, _, _ in rows:
        (folder / name).write_bytes(b"")
    with open(folder / PLACES_FILE, "w", newline="") as handle:
        csv.writer(handle).writerows([("role", "file", "east", "north"), *rows])
    return folder


def _detect(spec: str) -> bool:
    return (Path(spec) / PLACES_FILE).is_file()


def _describe(spec: str) -> str:
    return f"places list {spec} ({PLACES_FILE} of role, file, east, north)"


def _open(spec: str, split: str, images_root: Optional[str], protocol: Optional[str]) -> Split:
    with open(Path(spec) / PLACES_FILE, newline="") as handle:
        rows = list(csv.DictReader(handle))

    def subset(role: str):
        chosen = [r for r in rows if r["role"] == role]
        paths = [str(Path(spec) / r["file"]) for r in chosen]
        return paths, np.array([[float(r["east"]), float(r["north"])] for r in chosen]).reshape(-1, 2)

    (db_paths, db_utm), (q_paths, q_utm) = subset("database"), subset("query")
    return Split(Path(spec).name, split, db_paths, q_paths, db_utm, q_utm, protocol="places list")


def _discover(folder: Path) -> List[DatasetLocation]:
    if not (folder / PLACES_FILE).is_file():
        return []
    return [DatasetLocation(folder.name, str(folder), None, "places", "test", folder)]


PLACES = DatasetFormat(
    name="places",
    spec_help=f"a folder with {PLACES_FILE} (role, file, east, north)",
    detect=_detect,
    describe=_describe,
    open=_open,
    discover=_discover,
)


@pytest.fixture
def places_format():
    # A folder format must come before the VG folder, which accepts any folder.
    register_format(PLACES, before="vg")
    try:
        yield PLACES
    finally:
        unregister_format(PLACES.name)


def test_registered_format__reaches_open_describe_help_and_discovery(places_format, tmp_path):
    folder = write_places(tmp_path / "datasets" / "toy_town")

    split = open_dataset(str(folder), "test")
    assert (split.dataset, split.protocol, split.num_database, split.num_queries) == ("toy_town", "places list", 2, 1)
    assert [p.tolist() for p in split.positives(25.0)] == [[0]]

    assert describe_dataset_spec(str(folder)).startswith("places list")
    assert f"a folder with {PLACES_FILE}" in dataset_spec_help()
    with pytest.raises(DataError, match=PLACES_FILE):  # the not-found message lists it too
        open_dataset(str(tmp_path / "nope"), "test")

    location = find_datasets(tmp_path / "datasets")["toy_town"]
    assert (location.layout, location.split, location.path) == ("places", "test", folder)
    assert open_dataset(location.spec, location.split, location.images_root).num_queries == 1


def test_unregistered_format__is_gone_from_every_entry_point(tmp_path):
    folder = write_places(tmp_path / "datasets" / "toy_town")
    register_format(PLACES, before="vg")
    unregister_format("places")
    assert "places" not in [f.name for f in registered_formats()]
    assert PLACES_FILE not in dataset_spec_help()
    assert describe_dataset_spec(str(folder)).startswith("VG folder")
    with pytest.raises(DataError, match="not a VG data set folder"):
        open_dataset(str(folder), "test")
    assert find_datasets(tmp_path / "datasets") == {}


def test_register_format__rejects_a_duplicate_name_and_an_unknown_position():
    with pytest.raises(ValueError, match="'vg' is already registered"):
        register_format(DatasetFormat("vg", "x", _detect, _describe, _open))
    with pytest.raises(ValueError, match="no data set format named 'nope'"):
        register_format(PLACES, before="nope")
    with pytest.raises(ValueError, match="no data set format named 'nope'"):
        unregister_format("nope")
    assert [f.name for f in registered_formats()] == ["synthetic", "msls", "u1652", "gps_exif", "vg", "mat", "gps_csv"]


# -- detection order of the built-in formats ---------------------------------------------------


@pytest.fixture
def specs(tmp_path) -> dict:
    """One path per case of the detection order."""
    vg = tmp_path / "pitts30k"
    (vg / "images" / "test").mkdir(parents=True)
    msls = tmp_path / "msls"
    make_msls_city(msls, "train_val", "cph")
    msls_with_images = tmp_path / "msls_and_vg"
    make_msls_city(msls_with_images, "train_val", "cph")
    (msls_with_images / "images").mkdir()
    mat = tmp_path / "pitts30k_val.mat"
    scipy.io.savemat(str(mat), {"dbStruct": {"whichSet": "val"}})
    folder_named_mat = tmp_path / "folder.mat"
    folder_named_mat.mkdir()
    other_file = tmp_path / "list.txt"
    other_file.write_text("x")
    gps_csv = tmp_path / "photos.csv"
    gps_csv.write_text("path,latitude,longitude,role\n")
    exif_folder = tmp_path / "walk"
    for subset in ("database", "queries"):
        (exif_folder / subset).mkdir(parents=True)
    return {
        "synthetic": "synthetic", "synthetic:tiny": "synthetic:tiny", "synthetic:": "synthetic:",
        "msls:": "msls:", "msls:prefix": f"msls:{tmp_path / 'missing'}", "msls folder": str(msls),
        "msls folder with images/": str(msls_with_images), "vg folder": str(vg), "mat file": str(mat),
        "folder named .mat": str(folder_named_mat), "other file": str(other_file),
        "missing path": str(tmp_path / "nope"), "missing .mat": str(tmp_path / "pitts30k_test.mat"),
        "csv file": str(gps_csv), "missing .csv": str(tmp_path / "nope.csv"), "exif folder": str(exif_folder),
        "vg split folder": str(vg / "images" / "test"),
    }


@pytest.mark.parametrize("case, expected", [
    ("synthetic", "synthetic"), ("synthetic:tiny", "synthetic"), ("synthetic:", "synthetic"),
    ("msls:", "msls"), ("msls:prefix", "msls"), ("msls folder", "msls"),
    ("msls folder with images/", "vg"), ("vg folder", "vg"), ("mat file", "mat"),
    ("folder named .mat", "vg"), ("other file", None), ("missing path", None), ("missing .mat", None),
    ("csv file", "gps_csv"), ("missing .csv", None), ("exif folder", "gps_exif"), ("vg split folder", "vg"),
])
def test_detect_format__follows_the_registry_order(specs, case, expected):
    found = detect_format(specs[case])
    assert (found.name if found else None) == expected


@pytest.mark.parametrize("case, message", [
    ("synthetic:", "dataset 'synthetic:': missing size after 'synthetic:'"),
    ("msls:", "dataset 'msls:': missing folder after 'msls:'"),
    ("missing path", "nope: data set not found (expected one of: synthetic[:tiny|small|medium]"),
    ("missing .mat", "pitts30k_test.mat: data set not found"),
    ("other file", "list.txt: not a data set (expected one of: "),
    ("mat file", "pitts30k_val.mat: a NetVLAD .mat data set needs --images-root"),
])
def test_open_dataset__unreadable_specs_raise_one_line_naming_the_spec(specs, case, message):
    with pytest.raises(DataError, match=re.escape(message)) as error:
        open_dataset(specs[case], "val")
    assert "\n" not in str(error.value)


def test_describe_dataset_spec__judges_missing_paths_by_their_name(specs):
    assert describe_dataset_spec("/data/pitts30k_{split}.mat").startswith("NetVLAD .mat specification")
    assert describe_dataset_spec("/data/not_yet_mounted").startswith("VG folder")
    assert describe_dataset_spec(specs["msls folder with images/"]).startswith("VG folder")
    assert describe_dataset_spec(specs["msls folder"]).startswith("MSLS native layout")
    assert "missing size" in describe_dataset_spec("synthetic:")
    assert "not a data set" in describe_dataset_spec(specs["other file"])


def test_dataset_spec_help__lists_every_format_and_the_synthetic_sizes():
    from sfrs.data.synthetic import SIZES

    help_text = dataset_spec_help()
    assert all(f.spec_help in help_text for f in registered_formats())
    assert f"synthetic[:{'|'.join(SIZES)}]" in help_text
