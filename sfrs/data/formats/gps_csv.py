"""Reader of photos listed with their GPS position in a CSV file::

    path,latitude,longitude,role,split
    db/0001.jpg,48.85837,2.29448,database,test
    /data/phone/IMG_7.jpg,48.85842,2.29461,query,test

``path`` is relative to the CSV's folder or absolute; ``latitude``/``longitude`` are WGS84
degrees, converted to UTM (:mod:`sfrs.data.latlon`: one zone per split); ``role`` is
``query`` or ``database``. ``split`` is optional: without it the file is one split, served
whichever split is asked for (``photos_{split}.csv`` keeps one file per split). Other
columns are ignored. Spec: the ``.csv`` path.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from sfrs.data.formats.base import DatasetFormat, DatasetLocation
from sfrs.data.geo import Split
from sfrs.data.latlon import to_utm
from sfrs.errors import DataError

REQUIRED = ("path", "latitude", "longitude", "role")
SPLIT_COLUMN = "split"
ROLES = ("query", "database")
HEADER_HELP = "path,latitude,longitude,role[,split]"


class _Row(NamedTuple):
    line: int
    path: str
    latlon: Tuple[float, float]
    role: str
    split: Optional[str]


def _header(reader: "csv.DictReader", source: Path) -> Dict[str, str]:
    """Lower-case column name -> the name as written; checks the required ones."""
    names = {name.strip().lower(): name for name in (reader.fieldnames or []) if name is not None}
    missing = [column for column in REQUIRED if column not in names]
    if missing:
        raise DataError(f"{source}: no column {', '.join(missing)} in the header (expected {HEADER_HELP})")
    return names


def _number(text: str, column: str, where: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {column} {text!r} is not a number") from None


def read_rows(source: Path) -> Tuple[List[_Row], bool]:
    """Every row of the file, checked; and whether it has a ``split`` column.

    Raises:
        DataError: unreadable file, missing column, or a bad row (one line naming the file
            and the line: a missing value, a role other than query/database, a coordinate
            that is not a number, an image that does not exist).
    """
    try:
        handle = open(source, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{source}: cannot read ({exc.strerror})") from None
    rows: List[_Row] = []
    with handle:
        reader = csv.DictReader(handle)
        columns = _header(reader, source)
        has_split = SPLIT_COLUMN in columns
        wanted = REQUIRED + ((SPLIT_COLUMN,) if has_split else ())
        for record in reader:
            where = f"{source} line {reader.line_num}"
            values = {column: (record.get(columns[column]) or "").strip() for column in wanted}
            empty = [column for column in wanted if not values[column]]
            if empty:
                raise DataError(f"{where}: no value for {', '.join(empty)}")
            if values["role"] not in ROLES:
                raise DataError(f"{where}: role {values['role']!r} is not query or database")
            path = Path(values["path"]).expanduser()
            path = path if path.is_absolute() else source.parent / path
            if not path.is_file():
                raise DataError(f"{where}: image {path} not found")
            latlon = (_number(values["latitude"], "latitude", where), _number(values["longitude"], "longitude", where))
            rows.append(_Row(reader.line_num, str(path.resolve()), latlon, values["role"], values.get(SPLIT_COLUMN)))
    return rows, has_split


def read_gps_csv(source, split: str) -> Split:
    """One split of a GPS CSV file: queries and database in file order, positions in UTM.

    Raises:
        DataError: see :func:`read_rows`; the split absent from the ``split`` column, a
            split without queries or database images, or photos in two UTM zones.
    """
    source = Path(source).expanduser()
    rows, has_split = read_rows(source)
    if has_split:
        present = sorted({row.split for row in rows})
        rows = [row for row in rows if row.split == split]
        if not rows:
            raise DataError(f"{source}: no row of split '{split}' (splits present: {', '.join(present) or 'none'})")
    subsets = {role: [row for row in rows if row.role == role] for role in ROLES}
    for role, chosen in subsets.items():
        if not chosen:
            raise DataError(f"{source}: no row with role {role}" + (f" in split '{split}'" if has_split else ""))
    chosen = subsets["database"] + subsets["query"]
    utm, zone = to_utm(np.array([row.latlon for row in chosen]), [f"{source} line {row.line}" for row in chosen])
    count = len(subsets["database"])
    return Split(
        dataset=source.stem,
        split=split,
        database_paths=[row.path for row in subsets["database"]],
        query_paths=[row.path for row in subsets["query"]],
        database_utm=utm[:count],
        query_utm=utm[count:],
        protocol=f"GPS CSV {source} (role column; UTM zone {zone} from latitude/longitude)",
    )


# -- the format ----------------------------------------------------------------------------


def _detect(spec: str) -> bool:
    path = Path(spec).expanduser()
    return path.suffix.lower() == ".csv" and path.is_file()


def _describe(spec: str) -> str:
    return f"GPS CSV {spec} ({HEADER_HELP}; latitude/longitude converted to UTM)"


def _open(spec: str, split: str, images_root: Optional[str], protocol: Optional[str]) -> Split:
    return read_gps_csv(spec, split)


def _lists_photos(path: Path) -> Optional[List[str]]:
    """The split names of a CSV with this format's header (``["test"]`` without a split
    column), or None for any other file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = {name.strip().lower(): name for name in (reader.fieldnames or []) if name is not None}
            if not all(column in columns for column in REQUIRED):
                return None
            if SPLIT_COLUMN not in columns:
                return ["test"]
            return sorted({(row.get(columns[SPLIT_COLUMN]) or "").strip() for row in reader} - {""})
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _discover(folder: Path) -> List[DatasetLocation]:
    """Each CSV directly in ``folder`` with this format's header; split ``test``, else
    ``val``; named ``<folder>_<file stem>`` (just the folder's name for ``<folder>.csv``)."""
    found = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv" and p.is_file()):
        splits = _lists_photos(path)
        split = next((s for s in ("test", "val") if s in (splits or [])), None)
        if split is None:
            continue
        name = folder.name if path.stem == folder.name else f"{folder.name}_{path.stem}"
        found.append(DatasetLocation(name, str(path), None, "gps_csv", split, path))
    return found


GPS_CSV = DatasetFormat(
    name="gps_csv",
    spec_help=f"a .csv of photos with GPS ({HEADER_HELP})",
    detect=_detect,
    describe=_describe,
    open=_open,
    discover=_discover,
    name_suffixes=(".csv",),
)
