"""Reader of MSLS (Mapillary Street-Level Sequences) in its native layout.

Warburg et al., "Mapillary Street-Level Sequences: A Dataset for Lifelong Place
Recognition", CVPR 2020. See ``shared/spec/datasets.md`` section 3. Layout::

    <root>/{train_val,test}/<city>/{database,query}/
        images/<key>.jpg, raw.csv, postprocessed.csv, seq_info.csv, subtask_index.csv

What this reader relies on, and how sure we are (no MSLS copy is available here, so the
tests run on files written in this layout):

- Column names, taken from the reference loader ``mapillary_sls/datasets/msls.py``:
  ``postprocessed.csv`` has ``key``, ``easting``, ``northing``, ``night`` and
  ``view_direction`` (the loader tests ``== 'Sideways'``); ``raw.csv`` has ``key`` and
  ``pano``; ``subtask_index.csv`` has one boolean column per subtask (``all``, ``s2w``,
  ``w2s``, ``o2n``, ``n2o``, ``d2n``, ``n2d``). The first, unnamed column of each file is
  the pandas row index. Columns are looked up by name, case-insensitively, and a few
  spellings are accepted (``utm_easting``/``utm_northing``/``east``/``north``;
  ``qualitative_view_direction``; ``Sidewards``), see ``msls_tables.COLUMNS``.
- Row alignment: ``raw.csv`` and ``subtask_index.csv`` are matched to ``postprocessed.csv``
  by ``key`` when they have that column, else by row position (as the reference loader
  does); a row-count mismatch is an error.
- Booleans are written by pandas as ``True``/``False``; ``1``/``0`` and ``yes``/``no`` are
  also accepted.

Protocols (``protocol=``):

- ``"official"`` (val / test): the reference loader in ``mode='val'`` keeps the query and
  database images whose ``subtask_index.csv`` column ``all`` is true, drops panoramas
  (``raw.csv`` ``pano``) and drops queries without a database image within its positive
  radius ``posDistThr``. We do the same with ``positive_radius_m`` = 25 m, the evaluation
  radius (the reference constructor's default is 10 m; callers evaluating MSLS val pass
  25, we believe, but have not verified which radius produced the published lists). The
  published count for cph + sf is 740 queries and 18,871 database images; we could not
  check that count on real data, and ``Split.protocol`` notes any difference. When a
  ``subtask_index.csv`` is missing in any city read, the official subset cannot be
  rebuilt: we fall back to the ``"all"`` selection and say so in ``Split.protocol``.
  For ``split="train"`` there is no subtask filter in the reference loader: "official"
  equals "all" there (queries without a positive are dropped later by the trainer).
- ``"all"``: every non-panorama query and database image (the spirit of the converted
  ~11k-query VG-folder version; that conversion's exact filters are not verified).

UTM per city: every city lies in its own UTM zone, so the raw coordinates of two cities
may overlap. The i-th city read (0-based, in the order of ``cities``) has ``i * 1e7`` m
added to its easting (``CITY_EASTING_OFFSET_M``). Distances within a city are unchanged;
UTM eastings lie within (100 km, 900 km), so two cities are always more than 9,000 km
apart and no positive can cross cities. The coordinates are thus *not* plain UTM.

Specs (:data:`MSLS`, the format declared to the registry): ``msls:<root>``, or a folder
holding ``train_val/`` / ``test/`` city folders and no ``images/`` (a folder with
``images/`` is a VG folder, even when it also looks like MSLS).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from sfrs.data.formats.base import DatasetFormat, DatasetLocation
from sfrs.data.formats.msls_tables import aligned, booleans, floats, read_csv
from sfrs.data.geo import EVAL_POSITIVE_RADIUS_M, Split, positives_within
from sfrs.errors import DataError

PathLike = Union[str, Path]

MSLS_SPLITS = ("train", "val", "test")
MSLS_PROTOCOLS = ("official", "all")
VAL_CITIES = ("cph", "sf")
SUBSETS = ("database", "query")
CITY_EASTING_OFFSET_M = 1e7
OFFICIAL_VAL_QUERIES = 740
OFFICIAL_VAL_DATABASE = 18_871
SUBTASKS = ("all", "s2w", "w2s", "o2n", "n2o", "d2n", "n2d")
SCHEME = "msls:"

_SIDEWAYS = ("sideways", "sidewards")

__all__ = [
    "read_msls",
    "msls_cities",
    "is_msls_root",
    "MSLS_SPLITS",
    "MSLS_PROTOCOLS",
    "VAL_CITIES",
    "CITY_EASTING_OFFSET_M",
    "MSLS",
]


def is_msls_root(path: PathLike) -> bool:
    """True when ``path`` has ``train_val/`` or ``test/`` holding city folders with ``query/``
    or ``database/`` (a VG folder's ``test/`` holds ``database/`` and ``queries/`` directly)."""
    root = Path(path)
    for subdir in ("train_val", "test"):
        folder = root / subdir
        if not folder.is_dir():
            continue
        for city in folder.iterdir():
            if city.is_dir() and any((city / subset).is_dir() for subset in SUBSETS):
                return True
    return False


def _city_folders(root: Path, subdir: str) -> List[str]:
    folder = root / subdir
    if not folder.is_dir():
        return []
    return sorted(
        child.name for child in folder.iterdir()
        if child.is_dir() and any((child / subset).is_dir() for subset in SUBSETS)
    )


def msls_cities(root: PathLike, split: str) -> List[str]:
    """Default cities of ``split``: val = ``cph``, ``sf``; train = the other ``train_val/``
    cities, sorted; test = the cities under ``test/``, sorted."""
    root = Path(root)
    if split == "val":
        return list(VAL_CITIES)
    if split == "train":
        return [c for c in _city_folders(root, "train_val") if c not in VAL_CITIES]
    if split == "test":
        return _city_folders(root, "test")
    raise DataError(f"{root}: unknown MSLS split '{split}' (expected one of {', '.join(MSLS_SPLITS)})")


def _city_dir(root: Path, city: str, split: str) -> Path:
    order = ("test", "train_val") if split == "test" else ("train_val", "test")
    for subdir in order:
        if (root / subdir / city).is_dir():
            return root / subdir / city
    present = sorted(set(_city_folders(root, "train_val")) | set(_city_folders(root, "test")))
    raise DataError(
        f"{root / order[0] / city}: MSLS city folder not found (cities present: {', '.join(present) or 'none'})"
    )


# -- one city -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Subset:
    """The kept images of one city's ``database/`` or ``query/`` folder."""

    paths: List[str]
    utm: np.ndarray  # (N, 2) raw UTM of the city's zone
    night: np.ndarray
    sideways: np.ndarray


def _read_subset(folder: Path, is_query: bool, subtask: Optional[str], split: str) -> _Subset:
    """Read one ``database/`` or ``query/`` folder; ``subtask`` None = no official filter."""
    post_path = folder / "postprocessed.csv"
    if not post_path.is_file() and folder.parent.parent.name == "test":
        raise DataError(
            f"{post_path}: missing; MSLS test cities ship without positions (the ground truth is held "
            f"by the MSLS evaluation server), so split '{split}' cannot be evaluated locally"
        )
    post = read_csv(post_path, "MSLS metadata with key, easting, northing")
    wanted = ["key", "easting", "northing"] + (["night", "view_direction"] if is_query else [])
    cols = post.columns(wanted)
    keys = post.values(cols["key"])
    utm = np.stack([floats(post, cols["easting"]), floats(post, cols["northing"])], axis=1).reshape(-1, 2)
    if is_query:
        night = booleans(post, cols["night"])
        sideways = np.array([v.lower() in _SIDEWAYS for v in post.values(cols["view_direction"])], dtype=bool)
    else:
        night = sideways = np.zeros(len(keys), dtype=bool)

    raw = read_csv(folder / "raw.csv", "MSLS capture metadata with the 'pano' flag")
    pano = aligned(raw, keys, post_path, booleans(raw, raw.columns(["pano"])["pano"]))
    keep = ~pano
    if subtask is not None:
        index = read_csv(folder / "subtask_index.csv", "MSLS official subtask membership")
        marked = aligned(index, keys, post_path, booleans(index, index.columns([subtask])[subtask]))
        keep &= marked

    images = os.path.abspath(folder / "images")
    kept = np.flatnonzero(keep)
    return _Subset(
        paths=[os.path.join(images, keys[i] + ".jpg") for i in kept],
        utm=utm[kept],
        night=night[kept],
        sideways=sideways[kept],
    )


# -- the reader -----------------------------------------------------------------------------


def read_msls(
    root: PathLike,
    split: str = "val",
    cities: Optional[Sequence[str]] = None,
    protocol: str = "official",
    name: Optional[str] = None,
    subtask: str = "all",
    positive_radius_m: float = EVAL_POSITIVE_RADIUS_M,
) -> Split:
    """Read MSLS from its native layout for single-image retrieval (sequences are ignored).

    Args:
        root: the folder holding ``train_val/`` and/or ``test/``.
        split: ``val`` (cities ``cph`` and ``sf`` of ``train_val/``), ``train`` (the other
            ``train_val/`` cities) or ``test`` (the cities under ``test/``; they ship without
            positions, which is a DataError unless ``postprocessed.csv`` files were added).
        cities: city folder names overriding the split's default list, read in this order
            (looked up under the split's folder first, then the other one).
        protocol: ``official`` or ``all``; see the module docstring for the exact filters.
        name: data set name for reports; default ``msls_<split>``.
        subtask: ``subtask_index.csv`` column of the official protocol (``all`` = the
            standard im2im evaluation; ``s2w``, ``d2n``, ... select the MSLS subtasks).
        positive_radius_m: official protocol only: queries without a database image this
            close are dropped (the reference loader does so).
    Returns:
        A :class:`Split`; database and queries concatenated city by city, each in
        ``postprocessed.csv`` row order; UTM of shape (N, 2) / (Q, 2) with the i-th city's
        easting shifted by ``i * 1e7`` m; ``query_attributes``: ``night`` (bool, (Q,)),
        ``sideways`` (bool, ``view_direction == Sideways``), ``city`` (str).
    Raises:
        DataError: unknown split or protocol, missing city folder, CSV file or column, bad
            values, missing image, or no image left after filtering.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: MSLS folder does not exist")
    if split not in MSLS_SPLITS:
        raise DataError(f"{root}: unknown MSLS split '{split}' (expected one of {', '.join(MSLS_SPLITS)})")
    if protocol not in MSLS_PROTOCOLS:
        raise DataError(f"{root}: unknown MSLS protocol '{protocol}' (expected one of {', '.join(MSLS_PROTOCOLS)})")
    city_list = list(cities) if cities is not None else msls_cities(root, split)
    if not city_list:
        raise DataError(f"{root}: no MSLS city folders for split '{split}'")
    if len(set(city_list)) != len(city_list):
        raise DataError(f"{root}: MSLS cities listed twice ({', '.join(city_list)})")
    city_dirs = [_city_dir(root, city, split) for city in city_list]

    # The official subset needs subtask_index.csv in every folder read; otherwise fall back.
    fallback_reason = ""
    use_marker = protocol == "official" and split != "train"
    if use_marker:
        for city_dir in city_dirs:
            for subset in SUBSETS:
                marker = city_dir / subset / "subtask_index.csv"
                if not marker.is_file():
                    fallback_reason = f"{marker} is missing"
                    use_marker = False
                    break
            if fallback_reason:
                break
    marker_column = subtask if use_marker else None

    db_paths: List[str] = []
    q_paths: List[str] = []
    db_utm: List[np.ndarray] = []
    q_utm: List[np.ndarray] = []
    night: List[np.ndarray] = []
    sideways: List[np.ndarray] = []
    q_city: List[str] = []
    for index, (city, city_dir) in enumerate(zip(city_list, city_dirs)):
        offset = np.array([index * CITY_EASTING_OFFSET_M, 0.0])
        database = _read_subset(city_dir / "database", False, marker_column, split)
        queries = _read_subset(city_dir / "query", True, marker_column, split)
        db_paths += database.paths
        q_paths += queries.paths
        db_utm.append(database.utm + offset)
        q_utm.append(queries.utm + offset)
        night.append(queries.night)
        sideways.append(queries.sideways)
        q_city += [city] * len(queries.paths)

    where = "+".join(city_list)
    for subset, paths in (("database", db_paths), ("query", q_paths)):
        if not paths:
            raise DataError(f"{root}: MSLS {split} ({where}) has no {subset} image left (panoramas and, "
                            f"for the official protocol, images outside subtask '{subtask}' are skipped)")
    database_utm = np.concatenate(db_utm).reshape(-1, 2)
    query_utm = np.concatenate(q_utm).reshape(-1, 2)
    keep = np.ones(len(q_paths), dtype=bool)
    dropped_note = ""
    if use_marker:
        keep = np.array([p.size > 0 for p in positives_within(query_utm, database_utm, positive_radius_m)], dtype=bool)
        dropped = int((~keep).sum())
        dropped_note = f"; {dropped:,} without a database image within {positive_radius_m:g} m dropped"
        if not keep.any():
            raise DataError(f"{root}: MSLS {split} ({where}) has no query with a database image "
                            f"within {positive_radius_m:g} m")

    missing = [p for p in db_paths + q_paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"{missing[0]}: MSLS image missing ({len(missing):,} of "
                        f"{len(db_paths) + len(q_paths):,} images listed in the CSV files are missing)")

    kept = np.flatnonzero(keep)
    num_q = len(kept)
    counts = f"{num_q:,} queries, {len(db_paths):,} database images, {where}"
    if use_marker:
        text = (f"MSLS {split}, official protocol ({counts}; subtask_index.csv column '{subtask}', "
                f"panoramas skipped{dropped_note})")
        if split == "val" and subtask == "all" and city_list == list(VAL_CITIES) and num_q != OFFICIAL_VAL_QUERIES:
            text += f"; note: the published protocol has {OFFICIAL_VAL_QUERIES} queries"
    elif protocol == "official" and split == "train":
        text = f"MSLS train, all non-panorama images ({counts}; no subtask filter for training)"
    elif protocol == "official":
        text = (f"MSLS {split}, all non-panorama queries ({counts}); official protocol requested but "
                f"{fallback_reason}, so this is NOT the official subset")
    else:
        text = f"MSLS {split}, all non-panorama queries ({counts})"
    return Split(
        dataset=name if name is not None else f"msls_{split}",
        split=split,
        database_paths=db_paths,
        query_paths=[q_paths[i] for i in kept],
        database_utm=database_utm,
        query_utm=query_utm[kept],
        database_place_ids=None,
        query_attributes={
            "night": np.concatenate(night)[kept],
            "sideways": np.concatenate(sideways)[kept],
            "city": np.array(q_city, dtype=str)[kept],
        },
        protocol=text,
    )


# -- the format ----------------------------------------------------------------------------


def _is_msls_folder(spec: str) -> bool:
    path = Path(spec).expanduser()
    return path.is_dir() and not (path / "images").is_dir() and is_msls_root(path)


def _detect(spec: str) -> bool:
    return spec.startswith(SCHEME) or _is_msls_folder(spec)


def _describe(spec: str) -> str:
    root = spec[len(SCHEME):] if spec.startswith(SCHEME) else spec
    return f"MSLS native layout {root} (train_val/ and test/ city folders, CSV metadata)"


def _open(spec: str, split: str, images_root: Optional[str], protocol: Optional[str]) -> Split:
    root = spec
    if spec.startswith(SCHEME):
        root = spec[len(SCHEME):]
        if not root:
            raise DataError(f"dataset '{spec}': missing folder after '{SCHEME}'")
    return read_msls(Path(root).expanduser(), split, protocol=protocol or "official")


def _discover(folder: Path) -> List[DatasetLocation]:
    """The native layout with both validation cities under ``train_val/``, whatever the
    folder's name, as ``msls_val`` (the official 740-query protocol)."""
    if not is_msls_root(folder) or not all((folder / "train_val" / city).is_dir() for city in VAL_CITIES):
        return []
    return [DatasetLocation("msls_val", f"{SCHEME}{folder}", None, "msls", "val", folder)]


MSLS = DatasetFormat(
    name="msls",
    spec_help="msls:<folder> or a folder in the MSLS native layout (train_val/ and test/ city folders)",
    detect=_detect,
    describe=_describe,
    open=_open,
    discover=_discover,
)
