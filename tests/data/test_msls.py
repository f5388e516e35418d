"""MSLS native-layout reader on tiny folders written with the csv module and PIL JPEGs."""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import pytest
from PIL import Image

from sfrs.data import describe_dataset_spec, open_dataset
from sfrs.data.formats.msls import CITY_EASTING_OFFSET_M, is_msls_root, read_msls
from sfrs.errors import DataError

POST_HEADER = ["", "key", "easting", "northing", "night", "control_panel", "view_direction", "unique_cluster"]
RAW_HEADER = ["", "key", "lon", "lat", "ca", "captured_at", "pano"]
SEQ_HEADER = ["", "key", "sequence_key", "frame_number"]
SUBTASK_HEADER = ["", "all", "s2w", "w2s", "o2n", "n2o", "d2n", "n2d"]

# Every city uses the same raw UTM: without per-city offsets, queries would match other cities.
E0, N0 = 500000.0, 4000000.0

# (suffix, east offset, north offset, night, view, pano, official)
DATABASE = [
    ("d0", 0, 0, False, "Forward", False, True),
    ("d1", 0, 10, False, "Forward", False, False),  # not in the official subset
    ("d2", 100, 0, False, "Sideways", False, True),
    ("d3", 0, 0, False, "Forward", True, True),  # panorama: always skipped
]
QUERIES = [
    ("q0", 0, 5, False, "Forward", False, True),
    ("q1", 100, 3, True, "Sideways", False, False),  # not official
    ("q2", 0, 2, False, "Forward", True, True),  # panorama: always skipped
    ("q3", 9000, 0, True, "Backward", False, True),  # official but no positive within 25 m
]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_jpeg(path: Path, shade: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (shade, 64, 32)).save(path, "JPEG")


def make_msls_city(
    root: Path, subdir: str, city: str, subtask_index: bool = True, items: Optional[Dict[str, list]] = None
) -> Path:
    """One city with the DATABASE / QUERIES rows (keys prefixed with the city name)."""
    items = items or {"database": DATABASE, "query": QUERIES}
    city_dir = root / subdir / city
    for subset, rows in items.items():
        folder = city_dir / subset
        post, raw, seq, sub = [], [], [], []
        for i, (suffix, de, dn, night, view, pano, official) in enumerate(rows):
            key = f"{city}_{subset}_{suffix}"
            post.append([i, key, E0 + de, N0 + dn, night, False, view, 0])
            raw.append([i, key, 12.5, 55.6, 90.0, 1500000000000, pano])
            seq.append([i, key, f"{city}_seq", i])
            sub.append([i, official, False, False, False, False, False, False])
            write_jpeg(folder / "images" / f"{key}.jpg", 40 * i)
        write_csv(folder / "postprocessed.csv", POST_HEADER, post)
        write_csv(folder / "raw.csv", RAW_HEADER, raw)
        write_csv(folder / "seq_info.csv", SEQ_HEADER, seq)
        if subtask_index:
            write_csv(folder / "subtask_index.csv", SUBTASK_HEADER, sub)
    return city_dir


def make_msls(root: Path) -> Path:
    """Val cities cph and sf, train city london, test city miami (no positions, as released)."""
    for city in ("cph", "sf", "london"):
        make_msls_city(root, "train_val", city)
    for subset in ("database", "query"):
        folder = root / "test" / "miami" / subset
        write_jpeg(folder / "images" / "miami_x.jpg")
        write_csv(folder / "seq_info.csv", SEQ_HEADER, [[0, "miami_x", "s", 0]])
        write_csv(folder / "subtask_index.csv", SUBTASK_HEADER, [[0, True] + [False] * 6])
    return root


@pytest.fixture
def msls(tmp_path) -> Path:
    return make_msls(tmp_path / "MSLS")


def keys(paths):
    return [Path(p).stem for p in paths]


def rewrite_csv(path: Path, transform) -> None:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = transform(rows[0], rows[1:])
    write_csv(path, header, body)


# -- selection and order -------------------------------------------------------------------


def test_read_msls__all_protocol_keeps_every_non_panorama_image_city_by_city(msls):
    split = read_msls(msls, "val", protocol="all")
    assert split.dataset == "msls_val" and split.split == "val"
    assert keys(split.database_paths) == [f"{c}_database_{s}" for c in ("cph", "sf") for s in ("d0", "d1", "d2")]
    assert keys(split.query_paths) == [f"{c}_query_{s}" for c in ("cph", "sf") for s in ("q0", "q1", "q3")]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in split.database_paths + split.query_paths)
    np.testing.assert_array_equal(split.query_attributes["night"], [False, True, True] * 2)
    np.testing.assert_array_equal(split.query_attributes["sideways"], [False, True, False] * 2)
    assert list(split.query_attributes["city"]) == ["cph"] * 3 + ["sf"] * 3
    assert split.protocol == "MSLS val, all non-panorama queries (6 queries, 6 database images, cph+sf)"


def test_read_msls__each_city_is_offset_so_no_positive_crosses_cities(msls):
    split = read_msls(msls, "val", protocol="all")
    np.testing.assert_array_equal(split.query_utm[0], [E0, N0 + 5])
    np.testing.assert_array_equal(split.query_utm[3], [E0 + CITY_EASTING_OFFSET_M, N0 + 5])
    np.testing.assert_array_equal(split.database_utm[3:, 0] - split.database_utm[:3, 0], [CITY_EASTING_OFFSET_M] * 3)
    db_city = np.array(["cph"] * 3 + ["sf"] * 3)
    positives = split.positives(25)
    for q, found in enumerate(positives):
        assert set(db_city[found]) <= {split.query_attributes["city"][q]}
    # The raw coordinates are identical in both cities: each query finds exactly its own city's images.
    assert [list(p) for p in positives] == [[0, 1], [2], [], [3, 4], [5], []]


def test_read_msls__official_protocol_uses_subtask_index_and_drops_queries_without_positive(msls):
    official = read_msls(msls, "val")
    everything = read_msls(msls, "val", protocol="all")
    assert official.num_queries == 2 < everything.num_queries == 6
    assert keys(official.query_paths) == ["cph_query_q0", "sf_query_q0"]
    assert keys(official.database_paths) == [f"{c}_database_{s}" for c in ("cph", "sf") for s in ("d0", "d2")]
    assert list(official.query_attributes["city"]) == ["cph", "sf"]
    assert official.protocol.startswith("MSLS val, official protocol (2 queries, 4 database images, cph+sf;")
    assert "subtask_index.csv column 'all'" in official.protocol
    assert "2 without a database image within 25 m dropped" in official.protocol
    assert "the published protocol has 740 queries" in official.protocol
    assert all(len(p) for p in official.positives(25))


def test_read_msls__official_without_subtask_index_falls_back_to_all_and_says_so(msls):
    missing = msls / "train_val" / "sf" / "query" / "subtask_index.csv"
    missing.unlink()
    split = read_msls(msls, "val", protocol="official")
    assert split.num_queries == 6 and split.num_database == 6
    assert "NOT the official subset" in split.protocol and str(missing) in split.protocol


def test_read_msls__train_is_the_other_train_val_cities_and_cities_override(msls):
    train = read_msls(msls, "train")
    assert train.dataset == "msls_train" and set(train.query_attributes["city"]) == {"london"}
    assert train.num_database == 3 and train.num_queries == 3
    assert "no subtask filter" in train.protocol
    only_sf = read_msls(msls, "val", cities=["sf"], protocol="all", name="sf_only")
    assert only_sf.dataset == "sf_only" and set(only_sf.query_attributes["city"]) == {"sf"}
    np.testing.assert_array_equal(only_sf.query_utm[0], [E0, N0 + 5])  # first city: no offset


def test_read_msls__raw_csv_is_matched_by_key_not_row_order(msls):
    reference = read_msls(msls, "val", protocol="all")
    for city in ("cph", "sf"):
        rewrite_csv(msls / "train_val" / city / "database" / "raw.csv", lambda h, rows: (h, rows[::-1]))
    again = read_msls(msls, "val", protocol="all")
    assert again.database_paths == reference.database_paths


def test_read_msls__alternative_column_spellings_are_found_case_insensitively(msls):
    renamed = {
        "easting": "UTM_Easting", "northing": "UTM_Northing", "night": "Night", "view_direction": "View_Direction",
    }
    for city in ("cph", "sf"):
        for subset in ("database", "query"):
            rewrite_csv(
                msls / "train_val" / city / subset / "postprocessed.csv",
                lambda h, rows: ([renamed.get(c, c) for c in h], rows),
            )
    split = read_msls(msls, "val", protocol="all")
    assert split.num_queries == 6
    np.testing.assert_array_equal(split.query_attributes["sideways"], [False, True, False] * 2)


# -- errors ----------------------------------------------------------------------------------


def test_read_msls__missing_column_names_the_csv_and_the_column(msls):
    path = msls / "train_val" / "cph" / "query" / "postprocessed.csv"
    rewrite_csv(path, lambda h, rows: ([c for c in h if c != "night"], [r[:4] + r[5:] for r in rows]))
    with pytest.raises(DataError) as info:
        read_msls(msls, "val")
    message = str(info.value)
    assert message.startswith(f"{path}: missing column(s) 'night' (found: key, easting, northing,")
    assert "\n" not in message


def test_read_msls__missing_image_is_named(msls):
    image = msls / "train_val" / "sf" / "database" / "images" / "sf_database_d2.jpg"
    image.unlink()
    with pytest.raises(DataError, match=re.escape(f"{image}: MSLS image missing (1 of ")):
        read_msls(msls, "val", protocol="all")
    # A skipped panorama's image is not needed.
    (msls / "train_val" / "cph" / "query" / "images" / "cph_query_q2.jpg").unlink()
    read_msls(msls, "val", cities=["cph"], protocol="all")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda root: read_msls(root, "test"), "MSLS test cities ship without positions"),
        (
            lambda root: read_msls(root, "val", cities=["paris"]),
            "paris: MSLS city folder not found (cities present: cph, london, miami, sf)",
        ),
        (lambda root: read_msls(root, "valid"), "unknown MSLS split 'valid'"),
        (lambda root: read_msls(root, "val", protocol="vg"), "unknown MSLS protocol 'vg'"),
    ],
    ids=["test_without_positions", "unknown_city", "unknown_split", "unknown_protocol"],
)
def test_read_msls__bad_requests_raise_one_line(msls, call, message):
    with pytest.raises(DataError, match=re.escape(message)):
        call(msls)


def test_read_msls__non_boolean_pano_names_file_and_row(msls):
    path = msls / "train_val" / "sf" / "query" / "raw.csv"
    rewrite_csv(path, lambda h, rows: (h, [r[:6] + ["maybe"] for r in rows[:1]] + rows[1:]))
    with pytest.raises(DataError, match=re.escape(f"{path}: column 'pano' row 1 is 'maybe', not a boolean")):
        read_msls(msls, "val")


# -- open_dataset ---------------------------------------------------------------------------


def test_open_dataset__msls_prefix_and_detected_folder_pass_the_protocol(msls):
    assert is_msls_root(msls) and not is_msls_root(msls / "train_val")
    assert open_dataset(f"msls:{msls}", "val", protocol="all").num_queries == 6
    assert open_dataset(f"msls:{msls}", "val").num_queries == 2
    detected = open_dataset(str(msls), "val")
    assert detected.dataset == "msls_val" and detected.num_queries == 2
    assert open_dataset(str(msls), "train", None, "all").num_queries == 3
    assert "MSLS native layout" in describe_dataset_spec(f"msls:{msls}")
    assert "MSLS native layout" in describe_dataset_spec(str(msls))
