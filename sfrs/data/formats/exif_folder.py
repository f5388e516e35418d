"""Reader of a folder of photos located by the GPS tags in their EXIF::

    <folder>/database/**/*.jpg     the database
    <folder>/queries/**/*.jpg      the queries

(the subfolder names of a VG split). Positions are read from each photo's EXIF GPSInfo
(:mod:`sfrs.data.exif`) and converted to UTM (:mod:`sfrs.data.latlon`: one zone per
split). The folder is one split, served whichever split is asked for; ``photos/{split}``
as the spec keeps one folder per split. No ``images/`` level, so a VG folder
(``images/<split>/...``) is never read as one of these.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np

from sfrs.data.exif import read_gps
from sfrs.data.formats.base import DatasetFormat, DatasetLocation
from sfrs.data.formats.vg_folder import SUBSETS, list_images
from sfrs.data.geo import Split
from sfrs.data.latlon import to_utm
from sfrs.errors import DataError


def is_exif_folder(path: Path) -> bool:
    return path.is_dir() and all((path / subset).is_dir() for subset in SUBSETS)


def read_exif_folder(folder, split: str) -> Split:
    """The photos under ``database/`` and ``queries/`` (sorted by relative path), positioned
    by their EXIF GPS tags.

    Raises:
        DataError: a missing or empty subfolder, a photo without GPS tags (naming the file),
            photos in two UTM zones.
    """
    folder = Path(folder).expanduser()
    lists = {}
    for subset in SUBSETS:
        paths = list_images(folder / subset) if (folder / subset).is_dir() else []
        if not paths:
            raise DataError(f"{folder / subset}: no .jpg/.jpeg/.png photos")
        lists[subset] = paths
    paths = lists["database"] + lists["queries"]
    utm, zone = to_utm(np.array([read_gps(path) for path in paths]), paths)
    count = len(lists["database"])
    return Split(
        dataset=folder.name,
        split=split,
        database_paths=lists["database"],
        query_paths=lists["queries"],
        database_utm=utm[:count],
        query_utm=utm[count:],
        protocol=f"EXIF GPS folder {folder} (database/ vs queries/; UTM zone {zone})",
    )


# -- the format ----------------------------------------------------------------------------


def _detect(spec: str) -> bool:
    return is_exif_folder(Path(spec).expanduser())


def _describe(spec: str) -> str:
    return f"EXIF GPS folder {spec} ({{database,queries}}/ photos positioned by their EXIF GPS tags)"


def _open(spec: str, split: str, images_root: Optional[str], protocol: Optional[str]) -> Split:
    return read_exif_folder(spec, split)


def _discover(folder: Path) -> List[DatasetLocation]:
    if not is_exif_folder(folder):
        return []
    return [DatasetLocation(folder.name, str(folder), None, "gps_exif", "test", folder)]


EXIF_FOLDER = DatasetFormat(
    name="gps_exif",
    spec_help="a folder of {database,queries}/ photos with EXIF GPS tags",
    detect=_detect,
    describe=_describe,
    open=_open,
    discover=_discover,
)
