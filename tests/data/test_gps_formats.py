"""Photos located by GPS, not by UTM file names: a CSV of (path, latitude, longitude, role[,
split]) and a folder of JPEGs with EXIF GPS tags, converted to UTM and checked against an
independent transverse Mercator and published coordinates."""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from sfrs.data import describe_dataset_spec, find_datasets, open_dataset
from sfrs.data.exif import read_gps
from sfrs.data.latlon import to_utm
from sfrs.errors import DataError


def transverse_mercator(lat: float, lon: float, zone: int):
    """UTM of a WGS84 position by Krueger's series to third order (Karney, "Transverse
    Mercator with an accuracy of a few nanometers", J. Geodesy 2011, eq. 7-11): accurate
    to well under a millimetre within a zone; written from the paper, not from ``utm``."""
    a, f, k0 = 6378137.0, 1 / 298.257223563, 0.9996
    n = f / (2 - f)
    big_a = a / (1 + n) * (1 + n ** 2 / 4 + n ** 4 / 64)
    alpha = [n / 2 - 2 * n ** 2 / 3 + 5 * n ** 3 / 16, 13 * n ** 2 / 48 - 3 * n ** 3 / 5, 61 * n ** 3 / 240]
    phi, lam = math.radians(lat), math.radians(lon - (zone * 6 - 183))
    c = 2 * math.sqrt(n) / (1 + n)
    t = math.sinh(math.atanh(math.sin(phi)) - c * math.atanh(c * math.sin(phi)))
    xi, eta = math.atan2(t, math.cos(lam)), math.atanh(math.sin(lam) / math.sqrt(1 + t * t))
    east = 500000 + k0 * big_a * (eta + sum(al * math.cos(2 * j * xi) * math.sinh(2 * j * eta)
                                            for j, al in enumerate(alpha, 1)))
    north = k0 * big_a * (xi + sum(al * math.sin(2 * j * xi) * math.cosh(2 * j * eta)
                                   for j, al in enumerate(alpha, 1)))
    return east, north if lat >= 0 else north + 10_000_000


# (latitude, longitude, zone): the Eiffel Tower, the Sydney Opera House, Buenos Aires's Obelisco
PLACES = [(48.858370, 2.294481, "31N"), (-33.856784, 151.215297, "56S"), (-34.603722, -58.381592, "21S")]
#: published by the utm package's documentation for (51.2, 7.5): zone 32U
PUBLISHED = ((51.2, 7.5), (395201.31, 5673135.24))


@pytest.mark.parametrize("lat, lon, zone", PLACES)
def test_to_utm__matches_an_independent_transverse_mercator(lat, lon, zone):
    utm, found = to_utm(np.array([[lat, lon]]), ["here"])
    assert found == zone
    np.testing.assert_allclose(utm[0], transverse_mercator(lat, lon, int(zone[:-1])), atol=1e-3, rtol=0)


def test_to_utm__published_point_and_round_trip():
    import utm as utm_package

    (lat, lon), published = PUBLISHED
    positions, zone = to_utm(np.array([[lat, lon], [lat + 0.001, lon - 0.002]]), ["a", "b"])
    assert zone == "32N"
    np.testing.assert_allclose(positions[0], published, atol=0.01, rtol=0)
    back = utm_package.to_latlon(positions[1, 0], positions[1, 1], 32, northern=True)
    np.testing.assert_allclose(back, (lat + 0.001, lon - 0.002), atol=1e-7, rtol=0)  # 1 cm


# -- a small data set: a street of database photos, a query a few metres from some of them -----

ORIGIN = (48.858370, 2.294481)
STEP = 0.0005  # degrees of latitude between database photos (about 56 m)
QUERY_OFFSET = 0.00003  # about 3 m north of its database photo


def street(count_db=6, count_q=3):
    """(role, name, latitude, longitude) rows, database first."""
    rows = [("database", f"db{i}.jpg", ORIGIN[0] + i * STEP, ORIGIN[1]) for i in range(count_db)]
    rows += [("query", f"q{i}.jpg", ORIGIN[0] + 2 * i * STEP + QUERY_OFFSET, ORIGIN[1]) for i in range(count_q)]
    return rows


def dms(value: float):
    """Degrees, minutes, seconds as EXIF rationals (seconds in 1/10000)."""
    value = abs(value)
    degrees, minutes = int(value), int(value * 60) % 60
    seconds = round((value * 3600 - degrees * 3600 - minutes * 60) * 10000)
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(seconds, 10000)


def write_photo(path: Path, gps=None, seed=0):
    """A small JPEG (random pixels), with EXIF GPS tags at (latitude, longitude) when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    exif = Image.Exif()
    if gps is not None:
        lat, lon = gps
        exif[ExifTags.IFD.GPSInfo] = {
            ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S", ExifTags.GPS.GPSLatitude: dms(lat),
            ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W", ExifTags.GPS.GPSLongitude: dms(lon),
        }
    Image.fromarray(pixels).save(path, exif=exif)


def write_csv(path: Path, rows, header=("path", "latitude", "longitude", "role")):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


def write_street_csv(folder: Path, split_column=False):
    """photos.csv next to images/; the first database photo by absolute path."""
    rows = []
    for k, (role, name, lat, lon) in enumerate(street()):
        image = folder / "images" / name
        write_photo(image, seed=k)
        path = str(image) if k == 0 else f"images/{name}"
        rows.append((path, lat, lon, role) + (("test",) if split_column else ()))
    header = ("path", "latitude", "longitude", "role") + (("split",) if split_column else ())
    return write_csv(folder / "photos.csv", rows, header)


def expected_utm(rows):
    return np.array([transverse_mercator(lat, lon, 31) for _, _, lat, lon in rows])


def test_gps_csv__paths_roles_and_utm(tmp_path):
    source = write_street_csv(tmp_path / "city")
    split = open_dataset(str(source), "test")
    rows = street()
    assert split.dataset == "photos" and (split.num_database, split.num_queries) == (6, 3)
    assert split.database_paths == [str((tmp_path / "city" / "images" / f"db{i}.jpg").resolve()) for i in range(6)]
    np.testing.assert_allclose(np.vstack([split.database_utm, split.query_utm]), expected_utm(rows), atol=1e-3)
    assert [p.tolist() for p in split.positives(25.0)] == [[0], [2], [4]]
    assert "UTM zone 31N" in split.protocol


def test_gps_csv__split_column_and_split_template(tmp_path):
    rows = [(f"images/{n}", lat, lon, role, s) for s in ("train", "test") for role, n, lat, lon in street(2, 1)]
    for _, name, _, _ in street(2, 1):
        write_photo(tmp_path / "images" / name)
    source = write_csv(tmp_path / "all.csv", rows, ("path", "latitude", "longitude", "role", "split"))
    assert open_dataset(str(source), "train").num_database == 2
    with pytest.raises(DataError, match=r"all.csv: no row of split 'val' \(splits present: test, train\)"):
        open_dataset(str(source), "val")
    # without a split column a file is one split; {split} picks a file per split
    write_csv(tmp_path / "one_val.csv", [r[:4] for r in rows[:3]])
    assert open_dataset(str(tmp_path / "one_{split}.csv"), "val").num_queries == 1


@pytest.mark.parametrize("row, message", [
    (("images/q0.jpg", "north", "2.29", "query"), "line 3: latitude 'north' is not a number"),
    (("images/q0.jpg", "48.85", "2.29", "probe"), "line 3: role 'probe' is not query or database"),
    (("images/missing.jpg", "48.85", "2.29", "query"), "line 3: image "),
    (("images/q0.jpg", "", "2.29", "query"), "line 3: no value for latitude"),
    (("images/q0.jpg", "86.0", "2.29", "query"), "line 3: latitude 86.0 outside -80..84"),
])
def test_gps_csv__bad_row__one_line_naming_file_and_line(tmp_path, row, message):
    for name in ("db0.jpg", "q0.jpg"):
        write_photo(tmp_path / "images" / name)
    source = write_csv(tmp_path / "bad.csv", [("images/db0.jpg", "48.8584", "2.2945", "database"), row])
    with pytest.raises(DataError, match=re.escape(f"{source} {message}")) as error:
        open_dataset(str(source), "test")
    assert "\n" not in str(error.value)


def test_gps_csv__missing_column__names_it(tmp_path):
    source = write_csv(tmp_path / "bad.csv", [("a.jpg", 1, 2)], ("path", "lat", "longitude"))
    with pytest.raises(DataError, match=r"bad.csv: no column latitude, role in the header"):
        open_dataset(str(source), "test")


def test_gps_csv__photos_in_two_utm_zones__refused_naming_the_line(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_photo(tmp_path / name)
    # 5.95 E is zone 31, 6.05 E zone 32: 7 km apart, two planes
    source = write_csv(tmp_path / "border.csv", [("a.jpg", 48.0, 5.95, "database"), ("b.jpg", 48.0, 6.05, "database"),
                                                  ("c.jpg", 48.0, 5.95, "query")])
    with pytest.raises(DataError, match=re.escape(f"{source} line 3: UTM zone 32N differs from zone 31N of "
                                                  f"{source} line 2")):
        open_dataset(str(source), "test")


def write_exif_folder(folder: Path):
    rows = street()
    for k, (role, name, lat, lon) in enumerate(rows):
        write_photo(folder / ("database" if role == "database" else "queries") / name, (lat, lon), seed=k)
    return rows


def test_exif_folder__positions_from_degrees_minutes_seconds(tmp_path):
    rows = write_exif_folder(tmp_path / "walk")
    split = open_dataset(str(tmp_path / "walk"), "test")
    assert (split.dataset, split.num_database, split.num_queries) == ("walk", 6, 3)
    # the rationals hold seconds to 1/10000 (3 mm)
    np.testing.assert_allclose(np.vstack([split.database_utm, split.query_utm]), expected_utm(rows), atol=0.01)
    assert [p.tolist() for p in split.positives(25.0)] == [[0], [2], [4]]


@pytest.mark.parametrize("lat, lon", [(p[0], p[1]) for p in PLACES])
def test_read_gps__south_and_west_refs_give_negative_degrees(tmp_path, lat, lon):
    write_photo(tmp_path / "x.jpg", (lat, lon))
    np.testing.assert_allclose(read_gps(str(tmp_path / "x.jpg")), (lat, lon), atol=1e-7)


def test_exif_folder__photo_without_gps__one_line_naming_it(tmp_path):
    write_exif_folder(tmp_path / "walk")
    write_photo(tmp_path / "walk" / "queries" / "z_no_gps.jpg")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'walk' / 'queries' / 'z_no_gps.jpg'}: no GPS position "
                                                  "in its EXIF")) as error:
        open_dataset(str(tmp_path / "walk"), "test")
    assert "\n" not in str(error.value)


def test_gps_formats__described_and_discovered(tmp_path):
    source = write_street_csv(tmp_path / "root" / "city")
    write_exif_folder(tmp_path / "root" / "walk")
    assert describe_dataset_spec(str(source)).startswith("GPS CSV")
    assert describe_dataset_spec(str(tmp_path / "later_{split}.csv")).startswith("GPS CSV")
    assert describe_dataset_spec(str(tmp_path / "root" / "walk")).startswith("EXIF GPS folder")
    found = find_datasets(tmp_path / "root")
    assert {name: (loc.layout, loc.split, loc.path) for name, loc in found.items()} == {
        "city_photos": ("gps_csv", "test", source), "walk": ("gps_exif", "test", tmp_path / "root" / "walk")}
