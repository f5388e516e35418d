"""Reader of University-1652 (Zheng et al., "University-1652: A Multi-view Multi-source
Benchmark for Drone-based Geo-localization", ACM MM 2020), a cross-view data set.

Layout (``shared/spec/datasets.md`` section 4)::

    <root>/train/{drone,satellite,street,google}/<building_id>/*.jpg|jpeg|png
    <root>/test/{query_drone,gallery_satellite,query_satellite,gallery_drone,...}/<building_id>/*

A split is read in one retrieval direction and returned as an ordinary :class:`Split`:
queries are the images of one view, the database those of the other, and ground truth is
the building: each building gets a fake position ``(0, id * 1000)`` (its numeric folder
name, or its rank among the split's building names when some are not numeric), so that
the usual 25 m radius search finds exactly the same building's images, as the
fake-coordinate benchmarks SPED and AmsterTime do. ``sfrs-eval``, Recall@N and the
adaptation code thus need nothing specific to this data set.

Directions (the ``protocol`` argument of :func:`sfrs.data.open_dataset`):

- ``drone->satellite`` (default): ``train``: drone vs satellite; ``test``: query_drone vs
  gallery_satellite (951 buildings, 250 of them distractors, in the real data set);
- ``satellite->drone``: ``train``: satellite vs drone; ``test``: query_satellite vs
  gallery_drone.

The street and google views are not read. Specs: ``u1652:<root>``, or a folder holding
``train/{drone,satellite}`` or ``test/{query_drone,gallery_satellite}`` and no ``images/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from sfrs.data.formats.base import DatasetFormat
from sfrs.data.formats.vg_folder import list_images
from sfrs.data.geo import Split
from sfrs.errors import DataError

PathLike = Union[str, Path]

SCHEME = "u1652:"
DATASET_NAME = "university1652"
DRONE_TO_SATELLITE = "drone->satellite"
SATELLITE_TO_DRONE = "satellite->drone"
DIRECTIONS = (DRONE_TO_SATELLITE, SATELLITE_TO_DRONE)
SPLITS = ("train", "test")
#: fake northing between two buildings: far beyond any positive radius.
BUILDING_SPACING_M = 1000.0

#: (split, direction) -> (query folder, database folder) under ``<root>/<split>/``.
FOLDERS: Dict[Tuple[str, str], Tuple[str, str]] = {
    ("train", DRONE_TO_SATELLITE): ("drone", "satellite"),
    ("train", SATELLITE_TO_DRONE): ("satellite", "drone"),
    ("test", DRONE_TO_SATELLITE): ("query_drone", "gallery_satellite"),
    ("test", SATELLITE_TO_DRONE): ("query_satellite", "gallery_drone"),
}


def view_names(direction: str) -> Tuple[str, str]:
    """(query view, database view) of a direction: ``("drone", "satellite")`` or the reverse."""
    _check_direction(direction)
    query, database = direction.split("->")
    return query, database


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise DataError(f"University-1652: unknown direction '{direction}' (expected {' or '.join(DIRECTIONS)})")


def is_u1652_root(path: PathLike) -> bool:
    """True when ``path`` holds ``train/{drone,satellite}`` or ``test/{query_drone,gallery_satellite}``."""
    root = Path(path)
    return any(
        all((root / split / folder).is_dir() for folder in FOLDERS[(split, DRONE_TO_SATELLITE)])
        for split in SPLITS
    )


def _read_view(folder: Path) -> Tuple[List[str], List[str]]:
    """Image paths under ``folder/<building>/`` (buildings sorted by name) and their building names."""
    if not folder.is_dir():
        raise DataError(f"{folder}: University-1652 view folder not found")
    paths: List[str] = []
    buildings: List[str] = []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if child.is_dir():
            images = list_images(child)
            paths += images
            buildings += [child.name] * len(images)
    if not paths:
        raise DataError(f"{folder}: no .jpg/.jpeg/.png images in <building_id>/ folders")
    return paths, buildings


def building_northings(names: Sequence[str]) -> Dict[str, float]:
    """Fake northing of each building name: ``int(name) * 1000`` when every name is a
    number (stable across splits and directions), else ``rank * 1000``."""
    unique = sorted(set(names))
    if all(name.isdigit() for name in unique):
        return {name: int(name) * BUILDING_SPACING_M for name in unique}
    return {name: rank * BUILDING_SPACING_M for rank, name in enumerate(unique)}


def read_u1652(root: PathLike, split: str, direction: str = DRONE_TO_SATELLITE) -> Split:
    """One split of University-1652 in one direction.

    Args:
        root: the folder holding ``train/`` and/or ``test/``.
        split: ``train`` or ``test``.
        direction: ``drone->satellite`` or ``satellite->drone``.
    Returns:
        A :class:`Split` (queries = the first view, database = the second) with fake UTM
        ``(0, building * 1000)`` and ``database_place_ids`` = the database image's building.
    Raises:
        DataError: unknown split or direction, missing view folder, no images.
    """
    _check_direction(direction)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: University-1652 root not found")
    present = [s for s in SPLITS if (root / s).is_dir()]
    if split not in SPLITS or split not in present:
        raise DataError(
            f"{root}: University-1652 split '{split}' not found (splits present: {', '.join(present) or 'none'})"
        )
    query_folder, database_folder = FOLDERS[(split, direction)]
    query_paths, query_buildings = _read_view(root / split / query_folder)
    database_paths, database_buildings = _read_view(root / split / database_folder)
    northing = building_northings(query_buildings + database_buildings)

    def utm(buildings: Sequence[str]) -> np.ndarray:
        return np.array([(0.0, northing[b]) for b in buildings], dtype=np.float64).reshape(-1, 2)

    place = {name: index for index, name in enumerate(sorted(northing))}
    return Split(
        dataset=f"{DATASET_NAME} ({direction})",
        split=split,
        database_paths=database_paths,
        query_paths=query_paths,
        database_utm=utm(database_buildings),
        query_utm=utm(query_buildings),
        database_place_ids=np.array([place[b] for b in database_buildings], dtype=np.int64),
        protocol=(
            f"University-1652 {split}: {query_folder} ({len(set(query_buildings)):,} buildings) -> "
            f"{database_folder} ({len(set(database_buildings)):,} buildings); positive = same building"
        ),
    )


# -- the format ----------------------------------------------------------------------------


def _root_of(spec: str) -> str:
    root = spec[len(SCHEME):] if spec.startswith(SCHEME) else spec
    if not root:
        raise DataError(f"dataset '{spec}': missing folder after '{SCHEME}'")
    return root


def _detect(spec: str) -> bool:
    if spec.startswith(SCHEME):
        return True
    path = Path(spec).expanduser()
    return path.is_dir() and not (path / "images").is_dir() and is_u1652_root(path)


def _describe(spec: str) -> str:
    try:
        root = _root_of(spec)
    except DataError as exc:
        return str(exc)
    return f"University-1652 {root} (cross-view: <split>/<view>/<building_id>/, positive = same building)"


def _open(spec: str, split: str, images_root: Optional[str], protocol: Optional[str]) -> Split:
    return read_u1652(_root_of(spec), split, protocol or DRONE_TO_SATELLITE)


U1652 = DatasetFormat(
    name="u1652",
    spec_help="u1652:<folder> (University-1652: <split>/{drone,satellite,...}/<building_id>/)",
    detect=_detect,
    describe=_describe,
    open=_open,
)
